//! A testing layer that makes a share of storage requests fail with temporary errors, to prove
//! that the retry layer above it hides them ([`crate::StorageOptions::faults_per_thousand`]).
//!
//! It sits innermost, right on the service, and fails a request *before* it reaches the
//! storage, as a dropped connection would: stat, create_dir, rename, opening a read, each write
//! and close of a writer, each step of a listing and each delete. It never fails in the middle
//! of a streamed body.

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

/// Fails `per_thousand` of every 1000 requests with a temporary error.
#[derive(Debug, Clone)]
pub(crate) struct FaultLayer {
    dice: Arc<Dice>,
}

impl FaultLayer {
    /// A layer failing `per_thousand` of every 1000 requests (capped at 1000).
    pub(crate) fn new(per_thousand: u32) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        FaultLayer {
            dice: Arc::new(Dice {
                state: AtomicU64::new(seed),
                per_thousand: per_thousand.min(1000) as u64,
                injected: AtomicU64::new(0),
            }),
        }
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
    dice: Arc<Dice>,
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
        self.dice.roll("create_dir")?;
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.dice.roll("stat")?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let inner = self.inner.read(ctx, path, args)?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let inner = self.inner.write(ctx, path, args)?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        let inner = self.inner.delete(ctx)?;
        Ok(FaultWrap::new(inner, &self.dice))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let inner = self.inner.list(ctx, path, args)?;
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
        self.dice.roll("rename")?;
        self.inner.rename(ctx, from, to, args).await
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
    dice: Arc<Dice>,
}

impl<T> FaultWrap<T> {
    fn new(inner: T, dice: &Arc<Dice>) -> Self {
        FaultWrap {
            inner,
            dice: dice.clone(),
        }
    }
}

impl<R: oio::Read> oio::Read for FaultWrap<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        self.dice.roll("read")?;
        self.inner.open(range).await
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        self.dice.roll("read")?;
        self.inner.read(range).await
    }
}

impl<W: oio::Write> oio::Write for FaultWrap<W> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.dice.roll("write")?;
        self.inner.write(bs).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.dice.roll("close")?;
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

impl<L: oio::List> oio::List for FaultWrap<L> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        self.dice.roll("list")?;
        self.inner.next().await
    }
}

impl<D: oio::Delete> oio::Delete for FaultWrap<D> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        self.dice.roll("delete")?;
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.dice.roll("delete")?;
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_fails_about_the_asked_share() {
        let layer = FaultLayer::new(100);
        let failures = (0..10_000)
            .filter(|_| layer.dice.roll("test").is_err())
            .count();
        assert!((700..1300).contains(&failures), "{failures} of 10000");
        let err = layer
            .dice
            .roll("x")
            .err()
            .or_else(|| (0..1000).find_map(|_| layer.dice.roll("x").err()))
            .unwrap();
        assert!(err.is_temporary());
        let never = FaultLayer::new(0);
        assert!((0..1000).all(|_| never.dice.roll("t").is_ok()));
    }
}
