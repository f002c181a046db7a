//! The storage conformance suite every [`Backend`] must pass (modeled on restic's
//! `internal/backend/test`).
//!
//! Call [`run_all`] with a fresh, empty backend from a Tokio test. Each check is also a public
//! function, so a backend's tests can run one alone while debugging. Checks clean up what they
//! write and compare listings with what was there before, so they can run in any order on the
//! same backend (checks that write `config` remove it again; only `config_ignores_id` restores
//! a config that was there before). A failure panics with the check's name, the backend's
//! location and what was expected.

use bytes::Bytes;
use coffer_core::{Backend, ErrorKind, FileType, Id};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every file type that holds many objects (all but `config`).
const MULTI: [FileType; 5] = [
    FileType::Key,
    FileType::Pack,
    FileType::Index,
    FileType::Snapshot,
    FileType::Lock,
];

/// Runs every check against `backend`, which should be new and empty. Calls
/// [`Backend::create`] first.
pub async fn run_all(backend: Arc<dyn Backend>) {
    create_is_idempotent(&backend).await;
    new_backend_is_empty(&backend).await;
    round_trip_each_type(&backend).await;
    read_range_bounds(&backend).await;
    list_returns_what_was_written(&backend).await;
    list_ignores_other_types(&backend).await;
    stat_present_and_missing(&backend).await;
    remove_then_read_is_not_found(&backend).await;
    remove_missing_is_ok(&backend).await;
    config_ignores_id(&backend).await;
    large_object_round_trip(&backend).await;
    concurrent_writes(backend.clone()).await;
    overwrite_with_identical_bytes(&backend).await;
    new_backend_is_empty(&backend).await;
}

/// Deterministic pseudo-random bytes (xorshift64*), different for each `seed`.
pub fn test_data(len: usize, seed: u64) -> Bytes {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// A fresh seed for [`test_data`].
fn seed() -> u64 {
    let id = Id::random();
    u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// A backend wrapper that names the running check in every panic message.
struct Check<'a> {
    b: &'a dyn Backend,
    name: &'static str,
}

impl<'a> Check<'a> {
    fn new(b: &'a Arc<dyn Backend>, name: &'static str) -> Self {
        Check {
            b: b.as_ref(),
            name,
        }
    }

    fn fail(&self, msg: impl std::fmt::Display) -> ! {
        panic!(
            "backend suite: check `{}` failed on {}: {msg}",
            self.name,
            self.b.location()
        )
    }

    async fn create(&self) {
        if let Err(e) = self.b.create().await {
            self.fail(format_args!("create() failed: {e:?}"));
        }
    }

    async fn write(&self, ft: FileType, id: &Id, data: &Bytes) {
        if let Err(e) = self.b.write(ft, id, data.clone()).await {
            self.fail(format_args!(
                "write({}, {id:?}, {} bytes) failed: {e:?}",
                ft.name(),
                data.len()
            ));
        }
    }

    async fn read(&self, ft: FileType, id: &Id) -> Bytes {
        match self.b.read(ft, id).await {
            Ok(b) => b,
            Err(e) => self.fail(format_args!("read({}, {id:?}) failed: {e:?}", ft.name())),
        }
    }

    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Bytes {
        match self.b.read_range(ft, id, offset, length).await {
            Ok(b) => b,
            Err(e) => self.fail(format_args!(
                "read_range({}, {id:?}, {offset}, {length}) failed: {e:?}",
                ft.name()
            )),
        }
    }

    async fn stat(&self, ft: FileType, id: &Id) -> Option<u64> {
        match self.b.stat(ft, id).await {
            Ok(s) => s,
            Err(e) => self.fail(format_args!("stat({}, {id:?}) failed: {e:?}", ft.name())),
        }
    }

    async fn remove(&self, ft: FileType, id: &Id) {
        if let Err(e) = self.b.remove(ft, id).await {
            self.fail(format_args!("remove({}, {id:?}) failed: {e:?}", ft.name()));
        }
    }

    /// The listing as a map, failing on duplicate ids.
    async fn list(&self, ft: FileType) -> BTreeMap<Id, u64> {
        let entries = match self.b.list(ft).await {
            Ok(v) => v,
            Err(e) => self.fail(format_args!("list({}) failed: {e:?}", ft.name())),
        };
        let mut map = BTreeMap::new();
        for (id, size) in entries {
            if map.insert(id, size).is_some() {
                self.fail(format_args!("list({}) returned {id:?} twice", ft.name()));
            }
        }
        map
    }

    /// Asserts that the listing of `ft` is exactly `expected`.
    async fn expect_list(&self, ft: FileType, expected: &BTreeMap<Id, u64>, when: &str) {
        let got = self.list(ft).await;
        if &got != expected {
            let missing: Vec<_> = expected
                .iter()
                .filter(|(k, v)| got.get(k) != Some(v))
                .collect();
            let extra: Vec<_> = got
                .iter()
                .filter(|(k, v)| expected.get(k) != Some(v))
                .collect();
            self.fail(format_args!(
                "list({}) {when}: expected {} entries, got {}; missing or wrong size: {missing:?}; \
                 unexpected or wrong size: {extra:?}",
                ft.name(),
                expected.len(),
                got.len()
            ));
        }
    }

    fn expect_bytes(&self, what: &str, got: &Bytes, want: &[u8]) {
        if got.as_ref() != want {
            let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
            self.fail(format_args!(
                "{what}: got {} bytes, expected {} (first difference at {first_diff:?})",
                got.len(),
                want.len()
            ));
        }
    }
}

/// `create` succeeds, and succeeds again on an existing repository location.
pub async fn create_is_idempotent(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "create_is_idempotent");
    c.create().await;
    c.create().await;
}

/// Every listing is empty and there is no config (run on a fresh backend).
pub async fn new_backend_is_empty(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "new_backend_is_empty");
    for ft in FileType::ALL {
        c.expect_list(ft, &BTreeMap::new(), "on an empty backend")
            .await;
    }
    if let Some(n) = c.stat(FileType::Config, &Id::ZERO).await {
        c.fail(format_args!("an empty backend has a config of {n} bytes"));
    }
}

/// For each file type: write, read back the same bytes, stat gives the size, remove.
pub async fn round_trip_each_type(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "round_trip_each_type");
    for (i, ft) in FileType::ALL.into_iter().enumerate() {
        let data = test_data(1000 + 37 * i, seed());
        let id = if ft == FileType::Pack {
            Id::sha256(&data)
        } else {
            Id::random()
        };
        c.write(ft, &id, &data).await;
        let got = c.read(ft, &id).await;
        c.expect_bytes(&format!("read({}) after write", ft.name()), &got, &data);
        if c.stat(ft, &id).await != Some(data.len() as u64) {
            c.fail(format_args!(
                "stat({}) does not give the written size {}",
                ft.name(),
                data.len()
            ));
        }
        c.remove(ft, &id).await;
    }
}

/// `read_range` returns exactly the requested bytes at the start, middle and end, and fails on
/// a range that runs past the end or on a missing object.
pub async fn read_range_bounds(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "read_range_bounds");
    let data = test_data(4096 + 17, seed());
    let len = data.len() as u64;
    let id = Id::sha256(&data);
    c.write(FileType::Pack, &id, &data).await;

    let ranges = [
        (0, 1),
        (0, 100),
        (1000, 1),
        (2000, 517),
        (len - 100, 100),
        (len - 1, 1),
        (0, len),
        (len, 0),
    ];
    for (offset, length) in ranges {
        let got = c.read_range(FileType::Pack, &id, offset, length).await;
        let want = &data[offset as usize..(offset + length) as usize];
        c.expect_bytes(&format!("read_range({offset}, {length})"), &got, want);
    }
    for (offset, length) in [(len - 10, 11), (0, len + 1), (len, 1), (len + 100, 10)] {
        if let Ok(b) = backend
            .read_range(FileType::Pack, &id, offset, length)
            .await
        {
            c.fail(format_args!(
                "read_range({offset}, {length}) of a {len}-byte object succeeded with {} bytes; \
                 a range past the end must be an error",
                b.len()
            ));
        }
    }
    let missing = Id::random();
    match backend.read_range(FileType::Pack, &missing, 0, 10).await {
        Ok(_) => c.fail("read_range of a missing object succeeded"),
        Err(e) if e.kind() != ErrorKind::NotFound => c.fail(format_args!(
            "read_range of a missing object gave {e:?}, expected NotFound"
        )),
        Err(_) => {}
    }
    c.remove(FileType::Pack, &id).await;
}

/// For each type, `list` returns exactly the objects written (with their sizes), and after
/// removing them, exactly what was there before.
pub async fn list_returns_what_was_written(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "list_returns_what_was_written");
    for ft in MULTI {
        let before = c.list(ft).await;
        let mut expected = before.clone();
        for i in 0..5 {
            let data = test_data(100 + 13 * i, seed());
            let id = if ft == FileType::Pack {
                Id::sha256(&data)
            } else {
                Id::random()
            };
            c.write(ft, &id, &data).await;
            expected.insert(id, data.len() as u64);
        }
        c.expect_list(ft, &expected, "after writing 5 objects")
            .await;
        for id in expected.keys().filter(|id| !before.contains_key(id)) {
            c.remove(ft, id).await;
        }
        c.expect_list(ft, &before, "after removing them again")
            .await;
    }
}

/// An object of one type never shows up in the listing of another.
pub async fn list_ignores_other_types(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "list_ignores_other_types");
    let mut before = BTreeMap::new();
    for ft in MULTI {
        before.insert(ft.name(), c.list(ft).await);
    }
    let mut written = Vec::new();
    for (i, ft) in MULTI.into_iter().enumerate() {
        let data = test_data(50 + i, seed());
        let id = Id::sha256(&data);
        c.write(ft, &id, &data).await;
        written.push((ft, id, data.len() as u64));
    }
    for ft in MULTI {
        let mut expected = before[ft.name()].clone();
        for (wft, id, size) in &written {
            if *wft == ft {
                expected.insert(*id, *size);
            }
        }
        c.expect_list(ft, &expected, "with one object of every type present")
            .await;
    }
    for (ft, id, _) in &written {
        c.remove(*ft, id).await;
    }
}

/// `stat` gives the size of a present object and `None` for a missing one.
pub async fn stat_present_and_missing(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "stat_present_and_missing");
    for ft in MULTI {
        let data = test_data(321, seed());
        let id = Id::random();
        if let Some(n) = c.stat(ft, &id).await {
            c.fail(format_args!(
                "stat({}) of a missing object gave Some({n})",
                ft.name()
            ));
        }
        c.write(ft, &id, &data).await;
        if c.stat(ft, &id).await != Some(321) {
            c.fail(format_args!(
                "stat({}) of a 321-byte object is wrong",
                ft.name()
            ));
        }
        c.remove(ft, &id).await;
        if let Some(n) = c.stat(ft, &id).await {
            c.fail(format_args!(
                "stat({}) after remove gave Some({n})",
                ft.name()
            ));
        }
    }
}

/// After `remove`, `read` fails with [`ErrorKind::NotFound`] (and so does reading an object
/// that never existed).
pub async fn remove_then_read_is_not_found(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "remove_then_read_is_not_found");
    for ft in FileType::ALL {
        let data = test_data(64, seed());
        let id = Id::random();
        c.write(ft, &id, &data).await;
        c.remove(ft, &id).await;
        for when in ["after remove", "again"] {
            match backend.read(ft, &id).await {
                Ok(b) => c.fail(format_args!(
                    "read({}) {when} succeeded with {} bytes",
                    ft.name(),
                    b.len()
                )),
                Err(e) if e.kind() != ErrorKind::NotFound => c.fail(format_args!(
                    "read({}) {when} gave {e:?}, expected NotFound",
                    ft.name()
                )),
                Err(_) => {}
            }
        }
        if ft != FileType::Config {
            match backend.read(ft, &Id::random()).await {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                other => c.fail(format_args!(
                    "read({}) of an object that never existed gave {:?}, expected NotFound",
                    ft.name(),
                    other.map(|b| b.len())
                )),
            }
        }
    }
}

/// Removing an object that does not exist is not an error.
pub async fn remove_missing_is_ok(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "remove_missing_is_ok");
    for ft in MULTI {
        c.remove(ft, &Id::random()).await;
    }
    if c.stat(FileType::Config, &Id::ZERO).await.is_none() {
        c.remove(FileType::Config, &Id::random()).await;
    }
}

/// There is one config object: the id given to write, read, stat and remove is ignored, and
/// `list(Config)` shows one entry with its size.
pub async fn config_ignores_id(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "config_ignores_id");
    let original = match c.stat(FileType::Config, &Id::ZERO).await {
        Some(_) => Some(c.read(FileType::Config, &Id::ZERO).await),
        None => None,
    };
    let data = test_data(200, seed());
    c.write(FileType::Config, &Id::random(), &data).await;
    let got = c.read(FileType::Config, &Id::random()).await;
    c.expect_bytes("read(config) with another id", &got, &data);
    let got = c.read(FileType::Config, &Id::ZERO).await;
    c.expect_bytes("read(config) with the zero id", &got, &data);
    if c.stat(FileType::Config, &Id::random()).await != Some(200) {
        c.fail("stat(config) with another id does not give the written size");
    }
    let listed = c.list(FileType::Config).await;
    if listed.len() != 1 || listed.values().next() != Some(&200) {
        c.fail(format_args!(
            "list(config) gave {listed:?}, expected one entry of 200 bytes"
        ));
    }

    let second = test_data(150, seed());
    c.write(FileType::Config, &Id::random(), &second).await;
    let got = c.read(FileType::Config, &Id::random()).await;
    c.expect_bytes(
        "read(config) after writing it under another id",
        &got,
        &second,
    );
    if c.list(FileType::Config).await.len() != 1 {
        c.fail("two config writes under different ids left more than one config");
    }

    c.remove(FileType::Config, &Id::random()).await;
    if let Some(n) = c.stat(FileType::Config, &Id::ZERO).await {
        c.fail(format_args!(
            "config still has {n} bytes after remove with another id"
        ));
    }
    if let Some(original) = original {
        c.write(FileType::Config, &Id::ZERO, &original).await;
    }
}

/// A 20 MiB object is written, read whole and in ranges, listed and statted correctly.
pub async fn large_object_round_trip(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "large_object_round_trip");
    const SIZE: usize = 20 * 1024 * 1024;
    let data = test_data(SIZE, seed());
    let id = Id::sha256(&data);
    c.write(FileType::Pack, &id, &data).await;
    if c.stat(FileType::Pack, &id).await != Some(SIZE as u64) {
        c.fail("stat of the 20 MiB object is wrong");
    }
    let got = c.read(FileType::Pack, &id).await;
    c.expect_bytes("read of the 20 MiB object", &got, &data);
    if Id::sha256(&got) != id {
        c.fail("the 20 MiB object read back has a different SHA-256");
    }
    for (offset, length) in [
        (0u64, 1024 * 1024u64),
        (7_777_777, 3_333_333),
        (SIZE as u64 - 1_000_000, 1_000_000),
    ] {
        let got = c.read_range(FileType::Pack, &id, offset, length).await;
        c.expect_bytes(
            &format!("read_range({offset}, {length}) of the 20 MiB object"),
            &got,
            &data[offset as usize..(offset + length) as usize],
        );
    }
    match c.list(FileType::Pack).await.get(&id) {
        Some(&n) if n == SIZE as u64 => {}
        other => c.fail(format_args!(
            "list(pack) shows the 20 MiB object as {other:?}"
        )),
    }
    c.remove(FileType::Pack, &id).await;
}

/// 16 concurrent writes of distinct objects all succeed and all appear in the listing.
pub async fn concurrent_writes(backend: Arc<dyn Backend>) {
    let c = Check::new(&backend, "concurrent_writes");
    let before = c.list(FileType::Pack).await;
    let objects: Vec<(Id, Bytes)> = (0..16)
        .map(|i| {
            let data = test_data(10_000 + 1000 * i, seed());
            (Id::sha256(&data), data)
        })
        .collect();
    let tasks: Vec<_> = objects
        .iter()
        .cloned()
        .map(|(id, data)| {
            let b = backend.clone();
            tokio::spawn(async move { b.write(FileType::Pack, &id, data).await })
        })
        .collect();
    for (task, (id, _)) in tasks.into_iter().zip(&objects) {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => c.fail(format_args!("concurrent write of {id:?} failed: {e:?}")),
            Err(e) => c.fail(format_args!("concurrent write of {id:?} panicked: {e}")),
        }
    }
    let mut expected = before.clone();
    expected.extend(objects.iter().map(|(id, d)| (*id, d.len() as u64)));
    c.expect_list(FileType::Pack, &expected, "after 16 concurrent writes")
        .await;
    for (id, data) in &objects {
        let got = c.read(FileType::Pack, id).await;
        c.expect_bytes("read after a concurrent write", &got, data);
    }
    let removals: Vec<_> = objects
        .iter()
        .map(|(id, _)| {
            let (b, id) = (backend.clone(), *id);
            tokio::spawn(async move { b.remove(FileType::Pack, &id).await })
        })
        .collect();
    for task in removals {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => c.fail(format_args!("concurrent remove failed: {e:?}")),
            Err(e) => c.fail(format_args!("concurrent remove panicked: {e}")),
        }
    }
    c.expect_list(FileType::Pack, &before, "after removing the 16 objects")
        .await;
}

/// Writing an existing object again with the same bytes succeeds and leaves one object.
pub async fn overwrite_with_identical_bytes(backend: &Arc<dyn Backend>) {
    let c = Check::new(backend, "overwrite_with_identical_bytes");
    for ft in [FileType::Pack, FileType::Index, FileType::Lock] {
        let before = c.list(ft).await;
        let data = test_data(777, seed());
        let id = Id::sha256(&data);
        c.write(ft, &id, &data).await;
        c.write(ft, &id, &data).await;
        let got = c.read(ft, &id).await;
        c.expect_bytes("read after writing the same bytes twice", &got, &data);
        let mut expected = before.clone();
        expected.insert(id, 777);
        c.expect_list(ft, &expected, "after writing the same object twice")
            .await;
        c.remove(ft, &id).await;
    }
}
