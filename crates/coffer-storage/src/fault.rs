//! The innermost layer, right on the service. It does two things:
//!
//! - It marks lasting local-disk errors (a full disk, a quota, a read-only file system, a file
//!   too large) as permanent. OpenDAL's file system service calls every I/O error temporary,
//!   so the retry layer would spend its whole budget (half a minute) retrying a full disk before
//!   the user hears of it.
//! - For tests, it makes a share of requests fail with temporary errors, to prove that the retry
//!   layer above hides them ([`crate::StorageOptions::faults_per_thousand`]). A fault fails a
//!   request *before* it reaches the storage, as a dropped connection would: stat, create_dir,
//!   rename, opening a read, each write and close of a writer, each step of a listing and each
//!   delete. It never fails in the middle of a streamed body.

use opendal::raw::oio;
use opendal::raw::{
    Layer, OpCopy, OpCreateDir, OpDelete, OpList, OpPresign, OpRead, OpRename, OpStat, OpWrite,
    RpCreateDir, RpPresign, RpRead, RpRename, RpStat, Service, ServiceInfo, Servicer,
};
use opendal::{
    Buffer, BytesRange, Capability, Error, ErrorKind, Metadata, OperationContext, Result,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Classifies lasting disk errors, and fails `per_thousand` of every 1000 requests with a
/// temporary error (none when 0).
#[derive(Debug, Clone)]
pub(crate) struct FaultLayer {
    dice: Option<Arc<Dice>>,
}

impl FaultLayer {
    /// A layer failing `per_thousand` of every 1000 requests (capped at 1000; 0: none).
    pub(crate) fn new(per_thousand: u32) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        FaultLayer {
            dice: (per_thousand > 0).then(|| {
                Arc::new(Dice {
                    state: AtomicU64::new(seed),
                    per_thousand: per_thousand.min(1000) as u64,
                    injected: AtomicU64::new(0),
                })
            }),
        }
    }
}

/// Whether `e` comes from an I/O error that waiting will not cure.
fn is_lasting(e: &Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return matches!(
                io.kind(),
                StorageFull | QuotaExceeded | ReadOnlyFilesystem | FileTooLarge
            );
        }
        source = s.source();
    }
    false
}

/// Makes a lasting error permanent, so the retry layer reports it at once.
fn classify<T>(r: Result<T>) -> Result<T> {
    r.map_err(|e| {
        if e.is_temporary() && is_lasting(&e) {
            e.set_permanent()
        } else {
            e
        }
    })
}

/// Rolls the dice, if there are any.
fn roll(dice: &Option<Arc<Dice>>, what: &'static str) -> Result<()> {
    match dice {
        Some(d) => d.roll(what),
        None => Ok(()),
    }
}

/// A shared, lock-free random source (SplitMix64 over an atomic counter).
#[derive(Debug)]
struct Dice {
    state: AtomicU64,
    per_thousand: u64,
    injected: AtomicU64,
}

impl Dice {
    /// `Err` (temporary) for the unlucky share of calls.
    fn roll(&self, what: &'static str) -> Result<()> {
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if z % 1000 < self.per_thousand {
            let n = self.injected.fetch_add(1, Ordering::Relaxed) + 1;
            Err(Error::new(
                ErrorKind::Unexpected,
                format!("injected fault #{n} ({what})"),
            )
            .set_temporary())
        } else {
            Ok(())
        }
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            dice: self.dice.clone(),
        })
    }
}

/// The service wrapper.
#[derive(Debug)]
pub(crate) struct FaultService {
    inner: Servicer,
    dice: Option<Arc<Dice>>,
}

impl Service for FaultService {
    type Reader = FaultWrap<oio::Reader>;
    type Writer = FaultWrap<oio::Writer>;
    type Lister = FaultWrap<oio::Lister>;
    type Deleter = FaultWrap<oio::Deleter>;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        roll(&self.dice, "create_dir")?;
        classify(self.inner.create_dir(ctx, path, args).await)
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        roll(&self.dice, "stat")?;
        classify(self.inner.stat(ctx, path, args).await)
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let inner = classify(self.inner.read(ctx, path, args))?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let inner = classify(self.inner.write(ctx, path, args))?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        let inner = classify(self.inner.delete(ctx))?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let inner = classify(self.inner.list(ctx, path, args))?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(
        &self,
        ctx: &OperationContext,
        to: &str,
        args: opendal::raw::OpCompose,
    ) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        roll(&self.dice, "rename")?;
        classify(self.inner.rename(ctx, from, to, args).await)
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// A reader, writer, lister or deleter whose calls may fail.
pub(crate) struct FaultWrap<T> {
    inner: T,
    dice: Option<Arc<Dice>>,
}

impl<T> FaultWrap<T> {
    fn new(inner: T, dice: &Option<Arc<Dice>>) -> Self {
        FaultWrap {
            inner,
            dice: dice.clone(),
        }
    }
}

impl<R: oio::Read> oio::Read for FaultWrap<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        roll(&self.dice, "read")?;
        classify(self.inner.open(range).await)
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        roll(&self.dice, "read")?;
        classify(self.inner.read(range).await)
    }
}

impl<W: oio::Write> oio::Write for FaultWrap<W> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        roll(&self.dice, "write")?;
        classify(self.inner.write(bs).await)
    }

    async fn close(&mut self) -> Result<Metadata> {
        roll(&self.dice, "close")?;
        classify(self.inner.close().await)
    }

    async fn abort(&mut self) -> Result<()> {
        classify(self.inner.abort().await)
    }
}

impl<L: oio::List> oio::List for FaultWrap<L> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        roll(&self.dice, "list")?;
        classify(self.inner.next().await)
    }
}

impl<D: oio::Delete> oio::Delete for FaultWrap<D> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        roll(&self.dice, "delete")?;
        classify(self.inner.delete(path, args).await)
    }

    async fn close(&mut self) -> Result<()> {
        roll(&self.dice, "delete")?;
        classify(self.inner.close().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_fails_about_the_asked_share() {
        let layer = FaultLayer::new(100);
        let failures = (0..10_000)
            .filter(|_| roll(&layer.dice, "test").is_err())
            .count();
        assert!((700..1300).contains(&failures), "{failures} of 10000");
        let err = (0..1000)
            .find_map(|_| roll(&layer.dice, "x").err())
            .unwrap();
        assert!(err.is_temporary());
        let never = FaultLayer::new(0);
        assert!((0..1000).all(|_| roll(&never.dice, "t").is_ok()));
    }

    #[test]
    fn a_full_disk_is_permanent_other_io_errors_stay_temporary() {
        let io = |kind| opendal::raw::new_std_io_error(std::io::Error::from(kind));
        let full = classify::<()>(Err(io(std::io::ErrorKind::StorageFull))).unwrap_err();
        assert!(!full.is_temporary(), "{full}");
        let ro = classify::<()>(Err(io(std::io::ErrorKind::ReadOnlyFilesystem))).unwrap_err();
        assert!(!ro.is_temporary(), "{ro}");
        let other = classify::<()>(Err(io(std::io::ErrorKind::BrokenPipe))).unwrap_err();
        assert!(other.is_temporary(), "{other}");
    }
}
