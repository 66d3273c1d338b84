//! Deflate on every core, as pigz does: the input is cut into blocks, each block is compressed
//! on its own thread with the previous 32 KiB as its dictionary and ended with a sync flush (a
//! byte boundary), and the blocks joined in order are one valid deflate stream. Back-references
//! still reach 32 KiB back, so the archive is within a fraction of a percent of a one-thread
//! deflate's size.
//!
//! # Design
//! flate2 over zlib-rs (the Rust port of zlib, faster than the C zlib `zip -6` uses, and no C
//! to build). Blocks run on a pool of one thread per core (not tokio's blocking pool, whose
//! extra threads each keep an allocator arena of freed blocks: measured, 12 MiB more at the
//! peak); at most four blocks per core are queued (enough that a core rarely waits), so memory
//! is a few blocks however long the stream is.

use std::collections::VecDeque;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress, Status};
use tokio::sync::oneshot;

use super::PackageError;
use super::sink::ByteSink;

/// Input bytes per block: large enough that the per-block flush costs nothing measurable.
const BLOCK_SIZE: usize = 256 * 1024;
/// Deflate's window: what a block may refer back to.
const WINDOW: usize = 32 * 1024;

/// What a finished stream was: its CRC-32 and sizes, for the zip headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StreamSummary {
    pub crc32: u32,
    pub uncompressed: u64,
    pub compressed: u64,
}

struct Block {
    data: Vec<u8>,
    crc: crc32fast::Hasher,
}

type Job = Box<dyn FnOnce() + Send>;

/// The compression threads: one per core, for the life of the process.
fn pool() -> &'static Mutex<Sender<Job>> {
    static POOL: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        for n in 0..cores {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("deflate-{n}"))
                .spawn(move || {
                    loop {
                        let job = match receiver.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .expect("a deflate thread starts");
        }
        Mutex::new(sender)
    })
}

/// Runs `f` on the pool; the answer arrives on the returned channel.
fn on_pool<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> oneshot::Receiver<T> {
    let (tx, rx) = oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    if let Ok(sender) = pool().lock() {
        let _ = sender.send(job);
    }
    rx
}

/// A stream set aside at a byte boundary, to go on in another process: its summary so far
/// and the window the next block refers back to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeflateState {
    pub so_far: StreamSummary,
    /// The last 32 KiB of input, base64.
    pub window: String,
}

pub struct ParallelDeflate {
    level: Compression,
    pending: Vec<u8>,
    dictionary: Vec<u8>,
    in_flight: VecDeque<oneshot::Receiver<Result<Block, String>>>,
    max_in_flight: usize,
    crc: crc32fast::Hasher,
    uncompressed: u64,
    compressed: u64,
}

impl ParallelDeflate {
    pub fn new(level: u32) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ParallelDeflate {
            level: Compression::new(level),
            pending: Vec::with_capacity(BLOCK_SIZE),
            dictionary: Vec::new(),
            in_flight: VecDeque::new(),
            max_in_flight: cores * 4,
            crc: crc32fast::Hasher::new(),
            uncompressed: 0,
            compressed: 0,
        }
    }

    pub async fn write<S: ByteSink + ?Sized>(
        &mut self,
        mut data: &[u8],
        sink: &mut S,
    ) -> Result<(), PackageError> {
        while !data.is_empty() {
            let take = (BLOCK_SIZE - self.pending.len()).min(data.len());
            self.pending.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.pending.len() == BLOCK_SIZE {
                self.dispatch(false);
                while self.in_flight.len() >= self.max_in_flight {
                    self.emit_oldest(sink).await?;
                }
            }
        }
        Ok(())
    }

    /// Compresses what is left, ends the stream, and says what it was.
    pub async fn finish<S: ByteSink + ?Sized>(
        mut self,
        sink: &mut S,
    ) -> Result<StreamSummary, PackageError> {
        self.dispatch(true);
        while !self.in_flight.is_empty() {
            self.emit_oldest(sink).await?;
        }
        Ok(StreamSummary {
            crc32: self.crc.clone().finalize(),
            uncompressed: self.uncompressed,
            compressed: self.compressed,
        })
    }

    /// Ends the input so far at a byte boundary (a sync flush), writes every block, and says
    /// where the stream stands: `resume` goes on from there, in this process or another.
    pub async fn suspend<S: ByteSink + ?Sized>(
        mut self,
        sink: &mut S,
    ) -> Result<DeflateState, PackageError> {
        if !self.pending.is_empty() {
            self.dispatch(false);
        }
        while !self.in_flight.is_empty() {
            self.emit_oldest(sink).await?;
        }
        use base64::Engine;
        Ok(DeflateState {
            so_far: StreamSummary {
                crc32: self.crc.clone().finalize(),
                uncompressed: self.uncompressed,
                compressed: self.compressed,
            },
            window: base64::engine::general_purpose::STANDARD.encode(&self.dictionary),
        })
    }

    /// Goes on with a stream `suspend` set aside.
    pub fn resume(level: u32, state: &DeflateState) -> Result<Self, PackageError> {
        use base64::Engine;
        let dictionary = base64::engine::general_purpose::STANDARD
            .decode(&state.window)
            .map_err(|e| PackageError::Archive(format!("a suspended stream's window: {e}")))?;
        Ok(ParallelDeflate {
            dictionary,
            crc: crc32fast::Hasher::new_with_initial_len(
                state.so_far.crc32,
                state.so_far.uncompressed,
            ),
            uncompressed: state.so_far.uncompressed,
            compressed: state.so_far.compressed,
            ..ParallelDeflate::new(level)
        })
    }

    fn dispatch(&mut self, last: bool) {
        let input = std::mem::replace(&mut self.pending, Vec::with_capacity(BLOCK_SIZE));
        // The window of the stream so far: the previous one topped up with this block.
        let dictionary = std::mem::take(&mut self.dictionary);
        let mut window = dictionary.clone();
        window.extend_from_slice(&input[input.len().saturating_sub(WINDOW)..]);
        self.dictionary = window.split_off(window.len().saturating_sub(WINDOW));
        self.uncompressed += input.len() as u64;
        let level = self.level;
        self.in_flight.push_back(on_pool(move || {
            compress_block(level, &dictionary, &input, last)
        }));
    }

    async fn emit_oldest<S: ByteSink + ?Sized>(
        &mut self,
        sink: &mut S,
    ) -> Result<(), PackageError> {
        let Some(handle) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let block = handle
            .await
            .map_err(|_| {
                PackageError::Archive("a deflate block was lost (its thread panicked)".into())
            })?
            .map_err(PackageError::Archive)?;
        self.crc.combine(&block.crc);
        self.compressed += block.data.len() as u64;
        sink.write(Bytes::from(block.data)).await
    }
}

/// One block: raw deflate primed with `dictionary`, ended by a sync flush (or the final block).
fn compress_block(
    level: Compression,
    dictionary: &[u8],
    input: &[u8],
    last: bool,
) -> Result<Block, String> {
    let mut crc = crc32fast::Hasher::new();
    crc.update(input);
    let mut c = Compress::new(level, false);
    if !dictionary.is_empty() {
        c.set_dictionary(dictionary).map_err(|e| e.to_string())?;
    }
    let mut out = Vec::with_capacity(input.len() / 2 + 1024);
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = c.total_in() as usize;
        let status = c
            .compress_vec(&input[consumed..], &mut out, flush)
            .map_err(|e| e.to_string())?;
        let all_in = c.total_in() as usize == input.len();
        // A flush is complete when deflate returns with output space to spare.
        let done = if last {
            status == Status::StreamEnd
        } else {
            all_in && out.len() < out.capacity()
        };
        if done {
            return Ok(Block { data: out, crc });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    async fn deflate(data: &[u8], pieces: usize) -> (Vec<u8>, StreamSummary) {
        let mut out: Vec<u8> = Vec::new();
        let mut d = ParallelDeflate::new(6);
        for chunk in data.chunks(data.len().div_ceil(pieces).max(1)) {
            d.write(chunk, &mut out).await.unwrap();
        }
        let summary = d.finish(&mut out).await.unwrap();
        (out, summary)
    }

    fn sample(len: usize) -> Vec<u8> {
        let mut s = Vec::with_capacity(len);
        let mut i = 0u64;
        while s.len() < len {
            s.extend_from_slice(
                format!(
                    "{i},\"name, {}\",{}.5,2024-01-{:02}\n",
                    i % 97,
                    i * 7,
                    i % 28 + 1
                )
                .as_bytes(),
            );
            i += 1;
        }
        s.truncate(len);
        s
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn blocks_join_into_one_stream_that_inflates_to_the_input() {
        for len in [
            0,
            1,
            BLOCK_SIZE - 1,
            BLOCK_SIZE,
            BLOCK_SIZE + 1,
            5 * BLOCK_SIZE + 12345,
        ] {
            let input = sample(len);
            let (compressed, summary) = deflate(&input, 7).await;
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(&compressed[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "length {len}");
            assert_eq!(summary.crc32, crc32fast::hash(&input));
            assert_eq!(summary.uncompressed, len as u64);
            assert_eq!(summary.compressed, compressed.len() as u64);
        }
    }

    /// Suspended anywhere (mid-block, at a block's end, twice in a row) and resumed from its
    /// state alone, the stream is still one deflate stream of the whole input.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_suspended_stream_resumes_into_one_stream() {
        let input = sample(3 * BLOCK_SIZE + 777);
        for cuts in [
            vec![1000],
            vec![BLOCK_SIZE],
            vec![BLOCK_SIZE + 5, BLOCK_SIZE + 5, 2 * BLOCK_SIZE + 40_000],
        ] {
            let mut out: Vec<u8> = Vec::new();
            let mut d = ParallelDeflate::new(6);
            let mut at = 0;
            for cut in &cuts {
                d.write(&input[at..*cut], &mut out).await.unwrap();
                at = *cut;
                let state = d.suspend(&mut out).await.unwrap();
                assert_eq!(state.so_far.compressed, out.len() as u64);
                let json = serde_json::to_string(&state).unwrap();
                d = ParallelDeflate::resume(6, &serde_json::from_str(&json).unwrap()).unwrap();
            }
            d.write(&input[at..], &mut out).await.unwrap();
            let summary = d.finish(&mut out).await.unwrap();
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(&out[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, input, "cut at {cuts:?}");
            assert_eq!(summary.crc32, crc32fast::hash(&input));
            assert_eq!(summary.compressed, out.len() as u64);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_dictionary_keeps_the_size_within_one_percent_of_one_thread() {
        let input = sample(8 * BLOCK_SIZE);
        let (parallel, _) = deflate(&input, 3).await;
        let mut single = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
        std::io::Write::write_all(&mut single, &input).unwrap();
        let single = single.finish().unwrap();
        assert!(
            (parallel.len() as f64) < single.len() as f64 * 1.01,
            "parallel {} vs single {}",
            parallel.len(),
            single.len()
        );
    }
}
