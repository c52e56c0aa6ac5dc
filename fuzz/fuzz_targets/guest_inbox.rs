//! What the guest's PID 1 decodes (init's `Channel::read_messages` is this inbox over
//! the vsock stream): host messages, in any cut, any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    vm_wire_fuzz::check::<vm_wire::HostMsg>(input);
});
