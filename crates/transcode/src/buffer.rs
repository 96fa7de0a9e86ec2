//! Large buffers in transparent huge pages.
//!
//! Why: on the virtual machines we measured, copying hundreds of MB between the kernel and memory
//! in 4 KiB pages is several times slower than from 2 MiB pages (a 677 MB `write` took 2.06 s from
//! an ordinary buffer and 0.17 s from a huge-page one), so the input files are read into, and the
//! output tensors built in, anonymous mappings advised `MADV_HUGEPAGE`. Where the advice is not
//! supported the buffer is an ordinary mapping and only slower.

use memmap2::MmapMut;
use std::marker::PhantomData;

/// Element types a buffer may hold: plain numbers, valid for any bit pattern (zero included).
pub(crate) trait Plain: Copy + Send + Sync + 'static {}
impl Plain for u8 {}
impl Plain for i64 {}
impl Plain for f32 {}

/// A zero-initialised, page-aligned buffer of `len` elements of `T`.
pub(crate) struct HugeBuffer<T: Plain> {
    map: Option<MmapMut>,
    len: usize,
    _t: PhantomData<T>,
}

impl<T: Plain> HugeBuffer<T> {
    pub(crate) fn zeroed(len: usize) -> std::io::Result<Self> {
        let bytes = len * std::mem::size_of::<T>();
        if bytes == 0 {
            return Ok(HugeBuffer { map: None, len: 0, _t: PhantomData });
        }
        let map = MmapMut::map_anon(bytes)?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage); // advice only: ignore where unsupported
        Ok(HugeBuffer { map: Some(map), len, _t: PhantomData })
    }

    pub(crate) fn as_slice(&self) -> &[T] {
        match &self.map {
            // SAFETY: the map is page-aligned (so aligned for T), holds len * size_of::<T>() bytes,
            // and every bit pattern is a valid T (Plain).
            Some(map) => unsafe { std::slice::from_raw_parts(map.as_ptr() as *const T, self.len) },
            None => &[],
        }
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        match &mut self.map {
            // SAFETY: as in as_slice, and the borrow is unique.
            Some(map) => unsafe { std::slice::from_raw_parts_mut(map.as_mut_ptr() as *mut T, self.len) },
            None => &mut [],
        }
    }

    /// Keeps the first `len` elements (the memory stays mapped until drop).
    pub(crate) fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}
