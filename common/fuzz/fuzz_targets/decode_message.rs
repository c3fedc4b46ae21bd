//! Any bytes, as a request, reply or notification body in either codec:
//! decoding must return an error, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    faafo_common::messaging::fuzzing::decode_everything(data);
});
