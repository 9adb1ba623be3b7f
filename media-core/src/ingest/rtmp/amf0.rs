//! How deeply an AMF0 value nests, found without recursion.
//!
//! rml_amf0 decodes objects and arrays recursively, one stack frame per level: a 22 KB command of
//! nested objects overflows a worker thread's stack, which aborts the whole process. Commands are
//! therefore measured here first, with an explicit stack, and refused when they nest deeper than
//! any encoder's `connect` or `@setDataFrame` does.
//!
//! The walk follows rml_amf0's reading exactly (markers it knows, ECMA arrays read as objects,
//! strict arrays ending early at the end of the data) and stops where rml_amf0 would stop, so the
//! depth it reports bounds the depth rml_amf0 reaches.

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;

/// An open container while walking.
enum Open {
    /// An object or ECMA array: properties until an empty name and the end marker.
    Object,
    /// A strict array with this many values still to read.
    Array(u32),
}

/// True if the AMF0 values in `data` nest containers more than `max_depth` levels deep.
pub(crate) fn nests_deeper_than(data: &[u8], max_depth: usize) -> bool {
    let mut reader = Reader { data, pos: 0 };
    let mut open: Vec<Open> = Vec::new();
    loop {
        // Decide whether a value comes next, and close what is finished.
        match open.last_mut() {
            None => {
                if reader.at_end() {
                    return false;
                }
            }
            Some(Open::Array(0)) => {
                open.pop();
                continue;
            }
            Some(Open::Array(left)) => {
                *left -= 1;
                // rml_amf0 ends a strict array early at the end of the data.
                if reader.at_end() {
                    return false;
                }
            }
            Some(Open::Object) => {
                let Some(name_len) = reader.u16() else {
                    return false;
                };
                if name_len == 0 {
                    if reader.u8() != Some(OBJECT_END) {
                        return false;
                    }
                    open.pop();
                    continue;
                }
                reader.skip(usize::from(name_len));
                // A property without a value is an error for rml_amf0.
                if reader.at_end() {
                    return false;
                }
            }
        }
        // One value.
        let Some(marker) = reader.u8() else {
            return false;
        };
        match marker {
            NUMBER => reader.skip(8),
            BOOLEAN => reader.skip(1),
            NULL | UNDEFINED => {}
            STRING => match reader.u16() {
                Some(len) => reader.skip(usize::from(len)),
                None => return false,
            },
            OBJECT => open.push(Open::Object),
            ECMA_ARRAY => {
                if reader.u32().is_none() {
                    return false;
                }
                open.push(Open::Object);
            }
            STRICT_ARRAY => match reader.u32() {
                Some(count) => open.push(Open::Array(count)),
                None => return false,
            },
            // rml_amf0 refuses every other marker: decoding stops there.
            _ => return false,
        }
        if open.len() > max_depth {
            return true;
        }
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.data.get(self.pos..self.pos.checked_add(N)?)?;
        self.pos += N;
        bytes.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }

    /// Skips up to `n` bytes (rml_amf0 reads short strings without complaint).
    fn skip(&mut self, n: usize) {
        self.pos = self.pos.saturating_add(n).min(self.data.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Vec<u8> {
        let mut out = vec![STRING];
        out.extend_from_slice(&(s.len() as u16).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
        out
    }

    /// `connect(1, {app: "live", tcUrl: ..., nested: {a: [1]}})`, as encoders send it.
    fn connect() -> Vec<u8> {
        let mut out = string("connect");
        out.push(NUMBER);
        out.extend_from_slice(&1f64.to_be_bytes());
        out.push(OBJECT);
        for (name, value) in [("app", "live"), ("tcUrl", "rtmp://h/live")] {
            out.extend_from_slice(&(name.len() as u16).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend(string(value));
        }
        out.extend_from_slice(&6u16.to_be_bytes());
        out.extend_from_slice(b"nested");
        out.push(ECMA_ARRAY);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(b"a");
        out.push(STRICT_ARRAY);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.push(NULL);
        out.extend_from_slice(&[0, 0, OBJECT_END]);
        out.extend_from_slice(&[0, 0, OBJECT_END]);
        out.push(NULL);
        out
    }

    #[test]
    fn real_commands_pass() {
        let command = connect();
        assert!(!nests_deeper_than(&command, 3));
        assert!(
            nests_deeper_than(&command, 2),
            "object > ecma array > strict array"
        );
        // rml_amf0 decodes it, so the walk followed the same structure.
        let values = rml_amf0::deserialize(&mut std::io::Cursor::new(&command)).unwrap();
        assert_eq!(values.len(), 4);
    }

    #[test]
    fn deep_nesting_is_found_without_recursion() {
        // Far deeper than any thread's stack could take recursively.
        let objects: Vec<u8> = std::iter::repeat_n([OBJECT, 0, 1, b'x'], 1_000_000)
            .flatten()
            .collect();
        assert!(nests_deeper_than(&objects, 16));
        let arrays: Vec<u8> = std::iter::repeat_n([STRICT_ARRAY, 0, 0, 0, 1], 1_000_000)
            .flatten()
            .collect();
        assert!(nests_deeper_than(&arrays, 16));
        let mut ecma = Vec::new();
        for _ in 0..17 {
            ecma.extend_from_slice(&[ECMA_ARRAY, 0, 0, 0, 0, 0, 1, b'y']);
        }
        assert!(nests_deeper_than(&ecma, 16));
        assert!(!nests_deeper_than(&ecma[..16 * 8], 16));
    }

    #[test]
    fn wide_values_are_not_deep() {
        let mut array = vec![STRICT_ARRAY];
        array.extend_from_slice(&100_000u32.to_be_bytes());
        for _ in 0..100_000 {
            array.extend_from_slice(&[OBJECT, 0, 0, OBJECT_END]);
        }
        assert!(!nests_deeper_than(&array, 2));
    }

    #[test]
    fn truncated_and_unknown_input_ends_the_walk() {
        assert!(!nests_deeper_than(&[], 0));
        assert!(!nests_deeper_than(&[OBJECT, 0], 16));
        assert!(!nests_deeper_than(
            &[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff],
            16
        ));
        assert!(!nests_deeper_than(&[0x11, OBJECT, OBJECT], 1));
        assert!(!nests_deeper_than(&[STRING, 0xff, 0xff, OBJECT, OBJECT], 1));
    }
}
