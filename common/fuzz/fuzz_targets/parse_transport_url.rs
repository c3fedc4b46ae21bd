//! Any string as a transport URL: parsed or refused, never a panic; and a
//! password never shows in an error or in the parsed URL's output.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|parts: (&str, &str, &str, &str, &str)| {
    let (raw, scheme, user, host, rest) = parts;
    faafo_common::messaging::fuzzing::parse_url(raw, scheme, user, host, rest);
});
