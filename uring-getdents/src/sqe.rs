//! The GETDENTS submission queue entry, written from the patched uapi header.

use std::os::fd::RawFd;

/// `IORING_OP_GETDENTS` in the patched Linux 6.12 uapi (appended after IORING_OP_LISTEN).
pub const IORING_OP_GETDENTS: u8 = 58;
/// `sqe->getdents_flags`: read from the start of the directory.
pub const IORING_GETDENTS_REWIND: u32 = 1 << 0;
/// `IOSQE_FIXED_FILE`: `fd` is an index into the registered file table.
const IOSQE_FIXED_FILE: u8 = 1 << 0;

/// `struct io_uring_sqe` as the kernel reads it (64 bytes, x86_64 and every other
/// Linux ABI: all fields are naturally aligned).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawSqe {
    /// Operation code.
    pub opcode: u8,
    /// IOSQE_* flags.
    pub flags: u8,
    /// Request priority; must be 0 for GETDENTS.
    pub ioprio: u16,
    /// The directory: a descriptor, or a fixed-file index with IOSQE_FIXED_FILE.
    pub fd: i32,
    /// Offset; must be 0 for GETDENTS (it uses the file position).
    pub off: u64,
    /// User buffer address.
    pub addr: u64,
    /// User buffer length.
    pub len: u32,
    /// Op-specific flags (`getdents_flags`).
    pub op_flags: u32,
    /// Returned unchanged in the completion.
    pub user_data: u64,
    /// Buffer index / group; must be 0.
    pub buf_index: u16,
    /// Credentials to use (0: the submitter's).
    pub personality: u16,
    /// splice_fd_in / file_index; must be 0.
    pub splice_fd_in: i32,
    /// Third address; must be 0.
    pub addr3: u64,
    /// Padding; must be 0.
    pub pad2: u64,
}

const _: () = assert!(std::mem::size_of::<RawSqe>() == 64);
// Offsets from struct io_uring_sqe in include/uapi/linux/io_uring.h. The size alone
// would not catch two swapped fields, and the kernel reads bytes, not names.
const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(RawSqe, opcode) == 0);
    assert!(offset_of!(RawSqe, flags) == 1);
    assert!(offset_of!(RawSqe, ioprio) == 2);
    assert!(offset_of!(RawSqe, fd) == 4);
    assert!(offset_of!(RawSqe, off) == 8);
    assert!(offset_of!(RawSqe, addr) == 16);
    assert!(offset_of!(RawSqe, len) == 24);
    // The op flags union (rw_flags, getdents_flags in the patched header, ...).
    assert!(offset_of!(RawSqe, op_flags) == 28);
    assert!(offset_of!(RawSqe, user_data) == 32);
    assert!(offset_of!(RawSqe, buf_index) == 40);
    assert!(offset_of!(RawSqe, personality) == 42);
    // The splice_fd_in / file_index union.
    assert!(offset_of!(RawSqe, splice_fd_in) == 44);
    assert!(offset_of!(RawSqe, addr3) == 48);
    assert!(offset_of!(RawSqe, pad2) == 56);
};

/// The directory a GETDENTS reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirFd {
    /// An open file descriptor.
    Fd(RawFd),
    /// An index into the ring's registered files.
    Fixed(u32),
}

/// Builder for one `IORING_OP_GETDENTS` request.
///
/// ```no_run
/// # use uring_getdents::{DirFd, Getdents};
/// let mut buf = vec![0u8; 32 * 1024];
/// let entry = Getdents::new(DirFd::Fd(3), buf.as_mut_ptr(), buf.len() as u32)
///     .build()
///     .user_data(7);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Getdents {
    dir: DirFd,
    buf: *mut u8,
    len: u32,
    flags: u32,
}

impl Getdents {
    /// Reads entries of `dir` into `len` bytes at `buf`. The buffer must stay valid and
    /// unaliased until the request completes.
    pub fn new(dir: DirFd, buf: *mut u8, len: u32) -> Self {
        Self {
            dir,
            buf,
            len,
            flags: 0,
        }
    }

    /// Restart from the beginning of the directory before reading.
    pub fn rewind(mut self, rewind: bool) -> Self {
        if rewind {
            self.flags |= IORING_GETDENTS_REWIND;
        } else {
            self.flags &= !IORING_GETDENTS_REWIND;
        }
        self
    }

    /// Raw op flags, for testing how the kernel treats unknown bits.
    pub fn raw_flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }

    /// The raw SQE.
    pub fn raw(&self) -> RawSqe {
        let (fd, flags) = match self.dir {
            DirFd::Fd(fd) => (fd, 0),
            DirFd::Fixed(i) => (i as i32, IOSQE_FIXED_FILE),
        };
        RawSqe {
            opcode: IORING_OP_GETDENTS,
            flags,
            fd,
            addr: self.buf as u64,
            len: self.len,
            op_flags: self.flags,
            ..RawSqe::default()
        }
    }

    /// An entry for io-uring 0.7 rings.
    pub fn build(&self) -> io_uring::squeue::Entry {
        self.raw().into_entry()
    }

    /// An entry for io-uring 0.6 rings (the version tokio-uring 0.5 uses).
    pub fn build_v06(&self) -> io_uring_06::squeue::Entry {
        self.raw().into_entry_v06()
    }
}

impl RawSqe {
    /// Converts to an io-uring 0.7 entry.
    pub fn into_entry(self) -> io_uring::squeue::Entry {
        // SAFETY: io_uring::squeue::Entry is #[repr(C)] around the kernel's 64-byte
        // io_uring_sqe, which RawSqe mirrors field for field; transmute checks the size
        // and the tests check the layout against entries the crate builds itself.
        unsafe { std::mem::transmute::<RawSqe, io_uring::squeue::Entry>(self) }
    }

    /// Converts to an io-uring 0.6 entry.
    pub fn into_entry_v06(self) -> io_uring_06::squeue::Entry {
        // SAFETY: as in `into_entry`; io-uring 0.6's Entry has the same repr(C) layout.
        unsafe { std::mem::transmute::<RawSqe, io_uring_06::squeue::Entry>(self) }
    }

    /// Reads an io-uring 0.7 entry back (for tests and diagnostics).
    pub fn from_entry(entry: io_uring::squeue::Entry) -> Self {
        // SAFETY: same size and layout as above; every bit pattern is a valid RawSqe.
        unsafe { std::mem::transmute::<io_uring::squeue::Entry, RawSqe>(entry) }
    }

    /// Reads an io-uring 0.6 entry back.
    pub fn from_entry_v06(entry: io_uring_06::squeue::Entry) -> Self {
        // SAFETY: same size and layout as above; every bit pattern is a valid RawSqe.
        unsafe { std::mem::transmute::<io_uring_06::squeue::Entry, RawSqe>(entry) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use io_uring::{opcode, squeue::Flags, types};

    #[test]
    fn fields_land_where_the_crate_puts_them() {
        // Build a READ with every field we use set to a distinct value through the
        // crate's own API, and check our layout reads the same values back.
        let entry = opcode::Read::new(types::Fd(5), 0x1234_5678 as *mut u8, 4096)
            .offset(0x1111)
            .rw_flags(0x22)
            .ioprio(3)
            .buf_group(4)
            .build()
            .user_data(0xdead_beef)
            .personality(6)
            .flags(Flags::IO_LINK);
        let raw = RawSqe::from_entry(entry.clone());
        assert_eq!(raw.opcode, opcode::Read::CODE);
        assert_eq!(u32::from(raw.opcode), entry.get_opcode());
        assert_eq!(raw.fd, 5);
        assert_eq!(raw.addr, 0x1234_5678);
        assert_eq!(raw.len, 4096);
        assert_eq!(raw.off, 0x1111);
        assert_eq!(raw.op_flags, 0x22);
        assert_eq!(raw.ioprio, 3);
        assert_eq!(raw.buf_index, 4);
        assert_eq!(raw.user_data, 0xdead_beef);
        assert_eq!(raw.user_data, entry.get_user_data());
        assert_eq!(raw.personality, 6);
        assert_eq!(raw.flags, Flags::IO_LINK.bits());
    }

    #[test]
    fn getdents_entry_reads_back_through_the_crate() {
        let mut buf = [0u8; 64];
        let g = Getdents::new(DirFd::Fd(9), buf.as_mut_ptr(), 64).rewind(true);
        let entry = g.build().user_data(77).flags(Flags::IO_LINK);
        assert_eq!(entry.get_opcode(), u32::from(IORING_OP_GETDENTS));
        assert_eq!(entry.get_user_data(), 77);
        let dbg = format!("{entry:?}");
        assert!(
            dbg.contains(&format!("flags: {}", Flags::IO_LINK.bits())),
            "{dbg}"
        );
        let raw = RawSqe::from_entry(entry);
        assert_eq!(
            raw,
            RawSqe {
                opcode: 58,
                flags: Flags::IO_LINK.bits(),
                fd: 9,
                addr: buf.as_ptr() as u64,
                len: 64,
                op_flags: IORING_GETDENTS_REWIND,
                user_data: 77,
                ..RawSqe::default()
            }
        );
    }

    #[test]
    fn v06_entry_has_the_same_bytes() {
        let mut buf = [0u8; 8];
        let g = Getdents::new(DirFd::Fixed(3), buf.as_mut_ptr(), 8);
        let e6 = g.build_v06().user_data(5);
        assert_eq!(e6.get_user_data(), 5);
        let raw = RawSqe::from_entry_v06(e6);
        assert_eq!(raw.flags, IOSQE_FIXED_FILE);
        assert_eq!(raw.fd, 3);
        assert_eq!(
            raw,
            RawSqe {
                user_data: 0,
                ..g.raw()
            }
            .with_user_data(5)
        );
        // A v0.6 READ agrees with our layout too.
        let r6 = io_uring_06::opcode::Read::new(io_uring_06::types::Fd(4), 0x99 as *mut u8, 7)
            .offset(8)
            .build();
        let raw = RawSqe::from_entry_v06(r6);
        assert_eq!((raw.fd, raw.addr, raw.len, raw.off), (4, 0x99, 7, 8));
    }

    #[test]
    fn rewind_toggles_only_its_bit() {
        let g = Getdents::new(DirFd::Fd(1), std::ptr::null_mut(), 0);
        assert_eq!(g.rewind(true).raw().op_flags, IORING_GETDENTS_REWIND);
        assert_eq!(g.rewind(true).rewind(false).raw().op_flags, 0);
        assert_eq!(g.raw_flags(0x80).rewind(true).raw().op_flags, 0x81);
    }

    impl RawSqe {
        fn with_user_data(mut self, u: u64) -> Self {
            self.user_data = u;
            self
        }
    }
}
