//! The DNS floods of the benchmarks: their names, the query a client sends and the answer the
//! lab's responder gives. The lab bench (`examples/bench.rs`) sends and answers them; the
//! pipeline bench (`examples/pipeline.rs`) replays them as kernel records: both measure the same
//! messages.

/// The names of the repeated-name flood: documented hosts and a build's package registries.
pub const REPEATED_NAMES: [&str; 8] = [
    "api.github.com",
    "codeload.github.com",
    "objects.githubusercontent.com",
    "pipelines.actions.githubusercontent.com",
    "registry.npmjs.org",
    "pypi.org",
    "files.pythonhosted.org",
    "deb.debian.org",
];

/// The bytes an answer adds to its query.
pub const ANSWER_LEN: usize = 16;

/// Writes into `buf` a DNS query for `name` (A, IN, recursion desired) with id `id`.
pub fn query(id: u16, name: &str, buf: &mut Vec<u8>) {
    buf.clear();
    buf.extend_from_slice(&id.to_be_bytes());
    buf.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.') {
        buf.push(label.len() as u8);
        buf.extend_from_slice(label.as_bytes());
    }
    buf.extend_from_slice(&[0, 0, 1, 0, 1]);
}

/// Turns the query in `buf[..n]` into the responder's answer, in place: QR, RD copied, RA, and
/// one answer, the question's name (a pointer), A, IN, TTL 60, 198.18.7.x where x is the low
/// byte of the id (so answers differ by id, as a real resolver's would by rotation). Returns the
/// answer's length; `None` for what is not a query it answers (shorter than a header and a
/// question, longer than 512 bytes, or no room left in `buf`).
pub fn answer(buf: &mut [u8], n: usize) -> Option<usize> {
    if !(17..=512).contains(&n) || buf.len() < n + ANSWER_LEN {
        return None;
    }
    buf[2] |= 0x80;
    buf[3] = 0x80;
    buf[6..8].copy_from_slice(&1u16.to_be_bytes());
    let answer: [u8; ANSWER_LEN] = [
        0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 18, 7, buf[1],
    ];
    buf[n..n + ANSWER_LEN].copy_from_slice(&answer);
    Some(n + ANSWER_LEN)
}
