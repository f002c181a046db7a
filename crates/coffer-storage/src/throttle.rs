//! Bandwidth limits (`--limit-upload`, `--limit-download`): a [`Backend`] wrapper that paces
//! the bytes written and read, each direction on its own budget, shared by every transfer of
//! the process (OpenDAL's own throttle layer limits writes only).

use async_trait::async_trait;
use bytes::Bytes;
use coffer_core::{Backend, FileType, Id, Result};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes a direction may send at once after being idle: one second's worth.
const BURST: Duration = Duration::from_secs(1);

/// A pacing budget of `rate` bytes per second.
#[derive(Debug)]
pub(crate) struct Pace {
    rate: f64,
    /// When the bytes reserved so far will have been sent at the limit.
    next_free: Mutex<Instant>,
}

impl Pace {
    /// A budget of `bytes_per_second` (at least 1).
    pub(crate) fn new(bytes_per_second: u64) -> Pace {
        Pace {
            rate: bytes_per_second.max(1) as f64,
            next_free: Mutex::new(Instant::now()),
        }
    }

    /// Waits until `n` more bytes fit the budget.
    pub(crate) async fn take(&self, n: u64) {
        let ready = {
            // The generic cell rate algorithm: `next` is the theoretical time at which every
            // byte reserved so far has gone at the limit; a request may start up to one burst
            // ahead of it, so idle time earns at most one burst of credit.
            let mut next = self.next_free.lock().unwrap();
            let start = (*next).max(Instant::now());
            *next = start + Duration::from_secs_f64(n as f64 / self.rate);
            (*next).checked_sub(BURST).unwrap_or(start)
        };
        tokio::time::sleep_until(ready.into()).await;
    }
}

/// A backend whose uploads and downloads are paced.
pub(crate) struct Throttled {
    inner: Arc<dyn Backend>,
    up: Option<Pace>,
    down: Option<Pace>,
}

impl Throttled {
    /// Wraps `inner`; `None` leaves a direction unlimited.
    pub(crate) fn wrap(
        inner: Arc<dyn Backend>,
        upload: Option<u64>,
        download: Option<u64>,
    ) -> Arc<dyn Backend> {
        if upload.is_none() && download.is_none() {
            return inner;
        }
        Arc::new(Throttled {
            inner,
            up: upload.map(Pace::new),
            down: download.map(Pace::new),
        })
    }
}

#[async_trait]
impl Backend for Throttled {
    fn location(&self) -> String {
        self.inner.location()
    }

    async fn create(&self) -> Result<()> {
        self.inner.create().await
    }

    async fn list(&self, ft: FileType) -> Result<Vec<(Id, u64)>> {
        self.inner.list(ft).await
    }

    async fn read(&self, ft: FileType, id: &Id) -> Result<Bytes> {
        let data = self.inner.read(ft, id).await?;
        if let Some(p) = &self.down {
            p.take(data.len() as u64).await;
        }
        Ok(data)
    }

    async fn read_range(&self, ft: FileType, id: &Id, offset: u64, length: u64) -> Result<Bytes> {
        if let Some(p) = &self.down {
            p.take(length).await;
        }
        self.inner.read_range(ft, id, offset, length).await
    }

    async fn write(&self, ft: FileType, id: &Id, data: Bytes) -> Result<()> {
        if let Some(p) = &self.up {
            p.take(data.len() as u64).await;
        }
        self.inner.write(ft, id, data).await
    }

    async fn remove(&self, ft: FileType, id: &Id) -> Result<()> {
        self.inner.remove(ft, id).await
    }

    async fn stat(&self, ft: FileType, id: &Id) -> Result<Option<u64>> {
        self.inner.stat(ft, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pace_holds_the_average_rate() {
        // 1 MiB/s; 3 MiB taken: the first MiB is the burst, the other two take >= 2 s.
        let p = Pace::new(1 << 20);
        let t = Instant::now();
        for _ in 0..12 {
            p.take(256 << 10).await;
        }
        let secs = t.elapsed().as_secs_f64();
        assert!(secs >= 1.9, "3 MiB at 1 MiB/s took only {secs:.2} s");
    }

    #[tokio::test]
    async fn an_idle_budget_lends_one_burst_only() {
        let p = Pace::new(1 << 20);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let t = Instant::now();
        p.take(1 << 20).await; // the burst
        p.take(1 << 20).await; // a second MiB: about one second
        let secs = t.elapsed().as_secs_f64();
        assert!(
            secs >= 0.9,
            "idle time earned more than one burst: {secs:.2} s"
        );
    }
}
