//! Hash keys: the 128-bit decimal strings Kinesis routes by.

/// Parses an explicit hash key the way the Kinesis API accepts it: a
/// decimal integer matching `0|[1-9][0-9]{0,38}` whose value is at most
/// 2^128-1.
///
/// # Errors
/// The offset of the first offending character: a non-digit, a leading
/// zero, or the digit that makes the value too large; the length for an
/// empty string.
///
/// # Examples
/// ```
/// use kinesis_agg::parse_hash_key;
/// assert_eq!(parse_hash_key("0"), Ok(0));
/// assert_eq!(parse_hash_key("340282366920938463463374607431768211455"), Ok(u128::MAX));
/// assert_eq!(parse_hash_key("340282366920938463463374607431768211456"), Err(38));
/// assert_eq!(parse_hash_key("007"), Err(0));
/// assert_eq!(parse_hash_key("12a"), Err(2));
/// assert_eq!(parse_hash_key(""), Err(0));
/// ```
pub fn parse_hash_key(s: &str) -> Result<u128, usize> {
    let bytes = s.as_bytes();
    match bytes {
        [] => return Err(0),
        [b'0'] => return Ok(0),
        [b'0', ..] => return Err(0),
        _ => {}
    }
    let mut value: u128 = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if !b.is_ascii_digit() {
            return Err(i);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(b - b'0')))
            .ok_or(i)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_exactly_the_api_grammar() {
        assert_eq!(parse_hash_key("1"), Ok(1));
        assert_eq!(parse_hash_key("9"), Ok(9));
        assert_eq!(parse_hash_key("10"), Ok(10));
        // 39 digits below the maximum.
        assert_eq!(
            parse_hash_key("100000000000000000000000000000000000000"),
            Ok(10u128.pow(38))
        );
        // 40 digits: too large whatever they are.
        assert_eq!(
            parse_hash_key("1000000000000000000000000000000000000000"),
            Err(39)
        );
        assert_eq!(parse_hash_key("00"), Err(0));
        assert_eq!(parse_hash_key("-1"), Err(0));
        assert_eq!(parse_hash_key("+1"), Err(0));
        assert_eq!(parse_hash_key(" 1"), Err(0));
        assert_eq!(parse_hash_key("1 "), Err(1));
        assert_eq!(parse_hash_key("١"), Err(0));
    }
}
