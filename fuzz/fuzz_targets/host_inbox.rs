//! What the host runner decodes: guest messages, in any cut, any bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    vm_wire_fuzz::check::<vm_wire::GuestMsg>(input);
});
