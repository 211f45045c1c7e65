//! The live registry of the Windows host libwarden runs on, read through
//! the Win32 registry API (`advapi32`): the same keys and values the
//! offline audit reads from hive files, which a running Windows keeps
//! locked.

use std::ffi::c_void;

use super::hive::{Value, MAX_VALUE_DATA};

type Hkey = *mut c_void;

/// `HKEY_LOCAL_MACHINE`: `(HKEY)(ULONG_PTR)(LONG)0x80000002`.
const HKEY_LOCAL_MACHINE: isize = 0x8000_0002_u32 as i32 as isize;
const KEY_READ: u32 = 0x2_0019;
/// Read the 64-bit view even from a 32-bit build.
const KEY_WOW64_64KEY: u32 = 0x0100;
const ERROR_SUCCESS: i32 = 0;
const ERROR_FILE_NOT_FOUND: i32 = 2;
const ERROR_MORE_DATA: i32 = 234;
const ERROR_NO_MORE_ITEMS: i32 = 259;
/// The longest value name the registry allows, plus its NUL.
const NAME_CAP: usize = 16_384;
/// The most values read of one key.
const MAX_VALUES: u32 = 1 << 16;

#[link(name = "advapi32")]
extern "system" {
    fn RegOpenKeyExW(key: Hkey, sub: *const u16, options: u32, sam: u32, out: *mut Hkey) -> i32;
    fn RegEnumValueW(
        key: Hkey,
        index: u32,
        name: *mut u16,
        name_len: *mut u32,
        reserved: *mut u32,
        kind: *mut u32,
        data: *mut u8,
        data_len: *mut u32,
    ) -> i32;
    fn RegCloseKey(key: Hkey) -> i32;
}

/// Closes the key when dropped.
struct Key(Hkey);

impl Drop for Key {
    fn drop(&mut self) {
        // SAFETY: the handle came from RegOpenKeyExW and is closed once.
        unsafe {
            RegCloseKey(self.0);
        }
    }
}

/// Every value of `HKLM\path`; `Ok(None)` when the key does not exist,
/// `Err(code)` with the Win32 error otherwise.
pub fn values(path: &str) -> Result<Option<Vec<Value>>, i32> {
    let wide: Vec<u16> = path.encode_utf16().chain(std::iter::once(0)).collect();
    let mut h: Hkey = std::ptr::null_mut();
    // SAFETY: `wide` is NUL-terminated and outlives the call; `h` is a
    // valid out pointer.
    let rc = unsafe {
        RegOpenKeyExW(
            HKEY_LOCAL_MACHINE as Hkey,
            wide.as_ptr(),
            0,
            KEY_READ | KEY_WOW64_64KEY,
            &mut h,
        )
    };
    match rc {
        ERROR_SUCCESS => {}
        ERROR_FILE_NOT_FOUND => return Ok(None),
        e => return Err(e),
    }
    let key = Key(h);
    let mut out = Vec::new();
    let mut name = vec![0u16; NAME_CAP];
    let mut data = vec![0u8; 4096];
    let mut index = 0;
    while index < MAX_VALUES {
        let mut name_len = name.len() as u32;
        let mut data_len = data.len() as u32;
        let mut kind = 0u32;
        // SAFETY: the buffers are valid for the lengths passed, which the
        // call updates to what it wrote.
        let rc = unsafe {
            RegEnumValueW(
                key.0,
                index,
                name.as_mut_ptr(),
                &mut name_len,
                std::ptr::null_mut(),
                &mut kind,
                data.as_mut_ptr(),
                &mut data_len,
            )
        };
        match rc {
            ERROR_SUCCESS => {
                let n = (name_len as usize).min(name.len());
                let d = (data_len as usize).min(data.len());
                out.push(Value {
                    name: String::from_utf16_lossy(&name[..n]),
                    kind,
                    data: data[..d].to_vec(),
                });
                index += 1;
            }
            ERROR_MORE_DATA if data.len() < MAX_VALUE_DATA => {
                // Same index again with room for the data.
                let want = (data_len as usize).max(data.len() * 2);
                data.resize(want.min(MAX_VALUE_DATA), 0);
            }
            ERROR_NO_MORE_ITEMS => break,
            ERROR_MORE_DATA => index += 1,
            e => return Err(e),
        }
    }
    Ok(Some(out))
}
