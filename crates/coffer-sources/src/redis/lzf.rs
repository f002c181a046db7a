//! LZF decompression, for the keys and auxiliary fields Redis stores compressed in an RDB
//! (strings longer than 20 bytes when `rdbcompression` is on). Values are never decompressed:
//! they are passed to the target server as they are.

/// The most bytes LZF makes of one input byte: a 3-byte back reference copies at most 264.
const MAX_RATIO: usize = 88;

/// Decompresses `input` into exactly `expected` bytes, or says why it cannot. `expected` comes
/// from the file: the room reserved up front is what `input` can give at most, no more.
pub fn decompress(input: &[u8], expected: usize) -> Result<Vec<u8>, String> {
    let mut out: Vec<u8> = Vec::with_capacity(expected.min(input.len().saturating_mul(MAX_RATIO)));
    let mut ip = 0;
    while ip < input.len() {
        let ctrl = input[ip] as usize;
        ip += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let lit = input
                .get(ip..ip + len)
                .ok_or("an LZF literal runs past the end")?;
            out.extend_from_slice(lit);
            ip += len;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(ip).ok_or("an LZF length runs past the end")? as usize;
                ip += 1;
            }
            let low = *input.get(ip).ok_or("an LZF offset runs past the end")? as usize;
            ip += 1;
            let back = ((ctrl & 0x1f) << 8) + low + 1;
            if back > out.len() {
                return Err("an LZF back reference points before the start".into());
            }
            let start = out.len() - back;
            for i in 0..len + 2 {
                let b = out[start + i];
                out.push(b);
            }
        }
        if out.len() > expected {
            return Err(format!("LZF data grows past its stated {expected} bytes"));
        }
    }
    if out.len() != expected {
        return Err(format!(
            "LZF data gives {} bytes, not the stated {expected}",
            out.len()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::decompress;

    #[test]
    fn literals_and_back_references() {
        // "abcabcabcabc": literal "abc" (ctrl 2), then a 9-byte match 3 back:
        // len-2 = 7 -> ctrl high bits 7, extra length byte 0, offset 2.
        let data = [2, b'a', b'b', b'c', 0xe0, 0, 2];
        assert_eq!(decompress(&data, 12).unwrap(), b"abcabcabcabc");
        assert!(decompress(&data, 11).is_err());
        assert!(decompress(&[0xe0, 0, 5], 9).is_err());
    }

    #[test]
    fn a_stated_length_beyond_what_the_input_can_give_is_an_error() {
        let e = decompress(&[0, b'a'], usize::MAX).unwrap_err();
        assert!(e.contains("gives 1 bytes"), "{e}");
        // The longest back reference: 264 bytes from 3.
        let data = [0, b'a', 0xe0, 255, 0];
        assert_eq!(decompress(&data, 265).unwrap(), vec![b'a'; 265]);
    }
}
