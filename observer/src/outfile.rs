//! Writing an output file the user named (`--out`), safely whatever the path names.
//!
//! Reports and rules are often written as root, into shared directories, and sometimes to
//! `/dev/stdout` or a FIFO. So:
//! - a new or existing **regular file** is replaced atomically: the text goes to a temporary
//!   file created exclusively (`O_EXCL`, an unpredictable name: the `tempfile` crate) in the same
//!   directory, synced, then renamed over the target, so a reader never sees half of it and a
//!   symlink planted under a guessed temporary name redirects nothing;
//! - anything else that already exists (a character device such as `/dev/null`, a FIFO,
//!   `/dev/stdout`, a symlink) is **written into**, never replaced: renaming a file over
//!   `/dev/null` would replace the system's `/dev/null`. A symlink is opened like any path, so
//!   the kernel's protection of symlinks in sticky shared directories applies;
//! - a path that is one of the command's inputs (the same file after resolving links: same
//!   device and inode) is refused before anything is read ([`refuse_input`]), so
//!   `report merge a.json b.json --out a.json` cannot destroy its input.

use std::{
    fs,
    io::{self, Write},
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// What can go wrong writing an output file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot write {what} to {}: {source}", path.display())]
    Write {
        what: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("cannot write {what}: {source}")]
    Stdout { what: String, source: io::Error },
    #[error("cannot write {what} to {}: it is a directory; name a file", path.display())]
    Directory { what: String, path: PathBuf },
    #[error(
        "refusing to write to {}: it is the input {} (same file); name another output file",
        out.display(),
        input.display()
    )]
    SameAsInput { out: PathBuf, input: PathBuf },
}

/// Writes `text` to `out`: `-` is stdout (a reader that went away, `| head`, is an error that
/// `main` takes for success); a regular file (or a path that does not exist yet) is replaced
/// atomically; an existing device, FIFO or symlink is written into (module docs). `what` names
/// the content in errors ("the report").
pub fn write_out(out: &Path, text: &str, what: &str) -> Result<(), Error> {
    write_with(out, what, |w| w.write_all(text.as_bytes()))
}

/// Like [`write_out`], for content written piece by piece: `write` writes it (buffered) and is
/// called once. The JSON report of many flows is serialized straight into the file this way,
/// never held whole in memory. If `write` fails, a replaced file is left as it was; stdout, a
/// FIFO or a device may have received part of the content.
pub fn write_with(
    out: &Path,
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), Error> {
    if out == Path::new("-") {
        let mut stdout = io::BufWriter::new(io::stdout().lock());
        return write(&mut stdout)
            .and_then(|()| stdout.flush())
            .map_err(|source| Error::Stdout {
                what: what.to_owned(),
                source,
            });
    }
    let failed = |source| Error::Write {
        what: what.to_owned(),
        path: out.to_owned(),
        source,
    };
    match fs::symlink_metadata(out) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => atomic(out, write, None).map_err(failed),
        Err(e) => Err(failed(e)),
        Ok(m) if m.is_file() => atomic(out, write, Some(m.permissions())).map_err(failed),
        Ok(m) if m.is_dir() => Err(Error::Directory {
            what: what.to_owned(),
            path: out.to_owned(),
        }),
        Ok(_) => into(out, write).map_err(failed),
    }
}

/// Refuses an output path that is the same file as one of `inputs` (after resolving links). An
/// output that does not exist yet, `-`, or a non-regular file (a device, a FIFO: writing into
/// them destroys nothing) is never refused; an input that cannot be read is left for the
/// command to report.
pub fn refuse_input<P: AsRef<Path>>(out: &Path, inputs: &[P]) -> Result<(), Error> {
    if out == Path::new("-") {
        return Ok(());
    }
    let Ok(target) = fs::metadata(out) else {
        return Ok(());
    };
    if !target.is_file() {
        return Ok(());
    }
    for input in inputs {
        let input = input.as_ref();
        if let Ok(m) = fs::metadata(input) {
            if m.dev() == target.dev() && m.ino() == target.ino() {
                return Err(Error::SameAsInput {
                    out: out.to_owned(),
                    input: input.to_owned(),
                });
            }
        }
    }
    Ok(())
}

/// Replaces `out` with `text` through an exclusively created temporary file in its directory.
/// The new file keeps `keep`'s permissions (the replaced file's), or gets 0666 less the umask
/// as any new file.
fn atomic(
    out: &Path,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    keep: Option<fs::Permissions>,
) -> io::Result<()> {
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".observer-").suffix(".tmp");
    let created = fs::Permissions::from_mode(0o666);
    // The mode given at creation goes through the umask, like any new file's.
    builder.permissions(created);
    let mut tmp = builder.tempfile_in(dir)?;
    {
        let mut buffered = io::BufWriter::new(tmp.as_file_mut());
        write(&mut buffered)?;
        buffered.flush()?;
    }
    if let Some(keep) = keep {
        tmp.as_file().set_permissions(keep)?;
    }
    tmp.as_file().sync_all()?;
    // On failure the temporary file is removed when the error (holding it) is dropped.
    tmp.persist(out).map_err(|e| e.error)?;
    Ok(())
}

/// Writes into the existing non-regular file (or symlink) `out`, without creating or replacing
/// anything.
fn into(out: &Path, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(out)?;
    let mut buffered = io::BufWriter::new(file);
    write(&mut buffered)?;
    buffered.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt as _;

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("observer-outfile-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_new_file_is_created_and_an_old_one_replaced_keeping_its_mode() {
        let dir = scratch("regular");
        let out = dir.join("r.json");
        write_out(&out, "one\n", "the report").expect("write new");
        assert_eq!(fs::read_to_string(&out).expect("read"), "one\n");
        fs::set_permissions(&out, fs::Permissions::from_mode(0o640)).expect("chmod");
        let before = fs::metadata(&out).expect("stat").ino();
        write_out(&out, "two\n", "the report").expect("replace");
        assert_eq!(fs::read_to_string(&out).expect("read"), "two\n");
        let after = fs::metadata(&out).expect("stat");
        assert_ne!(
            after.ino(),
            before,
            "replaced by a rename, not rewritten in place"
        );
        assert_eq!(after.permissions().mode() & 0o777, 0o640);
        // No temporary file is left behind.
        assert_eq!(entries(&dir), ["r.json"]);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_old_predictable_temporary_name_redirects_nothing() {
        let dir = scratch("planted");
        let victim = dir.join("victim");
        fs::write(&victim, "precious\n").expect("victim");
        // The name the old code used; a planted symlink there must not be followed.
        let out = dir.join("r.json");
        let planted = dir.join(format!(".r.json.{}.tmp", std::process::id()));
        std::os::unix::fs::symlink(&victim, &planted).expect("plant");
        write_out(&out, "report\n", "the report").expect("write");
        assert_eq!(fs::read_to_string(&victim).expect("read"), "precious\n");
        assert_eq!(fs::read_to_string(&out).expect("read"), "report\n");
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_fifo_is_written_into_not_replaced() {
        let dir = scratch("fifo");
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read_to_string(fifo).expect("read fifo"))
        };
        write_out(&fifo, "through the pipe\n", "the report").expect("write");
        assert_eq!(reader.join().expect("reader"), "through the pipe\n");
        assert!(fs::symlink_metadata(&fifo)
            .expect("stat")
            .file_type()
            .is_fifo());
        assert_eq!(entries(&dir), ["pipe"]);
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_symlink_is_written_through_and_kept() {
        let dir = scratch("symlink");
        let target = dir.join("target.json");
        fs::write(&target, "old\n").expect("target");
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        write_out(&link, "new\n", "the report").expect("write");
        assert!(fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(fs::read_to_string(&target).expect("read"), "new\n");
        // A symlink to a device is written into too.
        let null = dir.join("null");
        std::os::unix::fs::symlink("/dev/null", &null).expect("link");
        write_out(&null, "gone\n", "the report").expect("write");
        assert!(fs::symlink_metadata(&null)
            .expect("stat")
            .file_type()
            .is_symlink());
        assert!(fs::metadata("/dev/null")
            .expect("stat")
            .file_type()
            .is_char_device());
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn dev_null_stays_a_character_device() {
        let null = Path::new("/dev/null");
        let before = fs::metadata(null).expect("stat /dev/null");
        write_out(null, "discarded\n", "the report").expect("write /dev/null");
        let after = fs::metadata(null).expect("stat /dev/null");
        assert!(after.file_type().is_char_device());
        assert_eq!((after.ino(), after.rdev()), (before.ino(), before.rdev()));
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = scratch("dir");
        let err = write_out(&dir, "x", "the report").expect_err("a directory");
        assert!(err.to_string().contains("is a directory"), "{err}");
        fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_input_as_output_is_refused_through_links() {
        let dir = scratch("input");
        let input = dir.join("a.json");
        fs::write(&input, "{}").expect("input");
        let other = dir.join("b.json");
        fs::write(&other, "{}").expect("other");
        let link = dir.join("link.json");
        std::os::unix::fs::symlink(&input, &link).expect("link");
        let hard = dir.join("hard.json");
        fs::hard_link(&input, &hard).expect("hard link");
        for out in [&input, &link, &hard] {
            let err = refuse_input(out, &[&other, &input]).expect_err("same file");
            assert_eq!(
                err.to_string(),
                format!(
                    "refusing to write to {}: it is the input {} (same file); name another output file",
                    out.display(),
                    input.display()
                )
            );
        }
        refuse_input(&other, &[&input]).expect("another file");
        refuse_input(&dir.join("new.json"), &[&input]).expect("a new file");
        refuse_input(Path::new("-"), &[&input]).expect("stdout");
        refuse_input(Path::new("/dev/null"), &[Path::new("/dev/null")]).expect("a device");
        fs::remove_dir_all(dir).ok();
    }

    /// Content written piece by piece that fails half-way (a full disk, a reader gone) leaves
    /// the target as it was, no temporary file, and the error's kind (a hostile review's test).
    #[test]
    fn a_write_that_fails_half_way_leaves_the_target_and_keeps_its_kind() {
        struct Failing<'a> {
            inner: &'a mut dyn Write,
            left: usize,
            kind: io::ErrorKind,
        }
        impl Write for Failing<'_> {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return Err(io::Error::from(self.kind));
                }
                let n = buf.len().min(self.left);
                self.left -= n;
                self.inner.write(&buf[..n])
            }
            fn flush(&mut self) -> io::Result<()> {
                self.inner.flush()
            }
        }
        let dir = scratch("failing");
        let out = dir.join("r.json");
        fs::write(&out, "old\n").expect("old");
        let big: Vec<String> = (0..100_000).map(|i| format!("flow {i}")).collect();
        for kind in [io::ErrorKind::BrokenPipe, io::ErrorKind::StorageFull] {
            let e = write_with(&out, "the report", |w| {
                let mut failing = Failing {
                    inner: w,
                    left: 50_000,
                    kind,
                };
                serde_json::to_writer_pretty(&mut failing, &big)?;
                Ok(())
            })
            .expect_err("fails");
            match e {
                Error::Write { source, .. } => assert_eq!(source.kind(), kind),
                other => panic!("{other:?}"),
            }
            assert_eq!(fs::read_to_string(&out).expect("read"), "old\n");
            assert_eq!(entries(&dir), ["r.json"]);
        }
        fs::remove_dir_all(dir).expect("clean up");
    }
}
