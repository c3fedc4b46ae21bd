//! Bodies compressed by a Python peer: oslo.messaging's rabbit driver with
//! `kombu_compression` set compresses each message with kombu and names the
//! method in the `compression` header (`application/x-gzip`, which is
//! kombu's zlib stream, or `application/x-bz2`). faafo reads them and
//! sends its own messages uncompressed, which every kombu peer reads.

use std::io::Read;

/// [`decompressed`] off the async threads when there is work to do (a
/// body can take a second of CPU to expand).
pub(crate) async fn decompressed_aside(
    body: Vec<u8>,
    method: Option<String>,
    max: usize,
) -> Result<Vec<u8>, String> {
    if method.is_none() {
        return decompressed(body, None, max);
    }
    tokio::task::spawn_blocking(move || decompressed(body, method.as_deref(), max))
        .await
        .unwrap_or_else(|e| Err(format!("decompression failed: {e}")))
}

/// The body of a delivery whose `compression` header is `method`, at most
/// `max` bytes once decompressed (a small body must not expand into
/// gigabytes); the reason, in words, when it cannot be read.
pub(crate) fn decompressed(
    body: Vec<u8>,
    method: Option<&str>,
    max: usize,
) -> Result<Vec<u8>, String> {
    let Some(method) = method else {
        return if body.len() > max {
            Err(format!("larger than the {max} bytes a message may have"))
        } else {
            Ok(body)
        };
    };
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut out = Vec::new();
    let read = match method {
        "application/x-gzip" => flate2::read::ZlibDecoder::new(body.as_slice())
            .take(limit)
            .read_to_end(&mut out),
        "application/x-bz2" => bzip2::read::BzDecoder::new(body.as_slice())
            .take(limit)
            .read_to_end(&mut out),
        other => {
            return Err(format!(
                "compressed with {}, which faafo does not read (it reads \
                 application/x-gzip and application/x-bz2)",
                crate::fractal::shorten(other)
            ));
        }
    };
    match read {
        Ok(_) if out.len() > max => Err(format!(
            "larger than the {max} bytes a message may have, once decompressed"
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(format!("not a valid {method} body: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).expect("compress");
        encoder.finish().expect("compress")
    }

    #[test]
    fn bodies_compressed_as_kombu_does_are_read() {
        // zlib.compress(b'hello'), as kombu's "gzip" sends it.
        let kombu = b"x\x9c\xcbH\xcd\xc9\xc9\x07\x00\x06,\x02\x15".to_vec();
        assert_eq!(
            decompressed(kombu, Some("application/x-gzip"), 100).expect("read"),
            b"hello"
        );
        let mut bz2 = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz2.write_all(b"hello").expect("compress");
        let bz2 = bz2.finish().expect("compress");
        assert_eq!(
            decompressed(bz2, Some("application/x-bz2"), 100).expect("read"),
            b"hello"
        );
        assert_eq!(
            decompressed(b"plain".to_vec(), None, 5).expect("as is"),
            b"plain"
        );
        assert!(
            decompressed(b"plain".to_vec(), None, 4).is_err(),
            "too large"
        );
    }

    #[test]
    fn a_body_that_expands_past_the_limit_or_is_not_compressed_is_refused() {
        let bomb = zlib(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 100 << 10, "{} bytes", bomb.len());
        let error = decompressed(bomb, Some("application/x-gzip"), 1 << 20).expect_err("refused");
        assert!(error.contains("once decompressed"), "{error}");
        let error =
            decompressed(b"{}".to_vec(), Some("application/x-gzip"), 100).expect_err("not zlib");
        assert!(
            error.starts_with("not a valid application/x-gzip body"),
            "{error}"
        );
        let error =
            decompressed(b"{}".to_vec(), Some("application/x-lzma"), 100).expect_err("unknown");
        assert!(error.contains("does not read"), "{error}");
    }
}
