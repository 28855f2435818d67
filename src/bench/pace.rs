//! Open loop (`--rate`, `--background-rate`): calls start on a fixed schedule, one every
//! 1/rate from the start of the run, whether or not the ones before were answered. A
//! stall of the daemon then shows in the latencies instead of quietly slowing the load
//! (coordinated omission): a call's latency runs from its scheduled time, not from when
//! it was sent. At most `--concurrency` calls of a group are in flight; a call due while
//! every slot is busy waits for one, and counts as late. With several targets the calls
//! go to them in turn.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

use super::args::Mix;
use super::driver::Drive;
use super::report::{LATE, Pace, Stats};
use super::synthetic::Rng;

/// Draws of the mix for one slot of the schedule before it is given up (every kind drawn
/// had no conversation in a status it allows).
const REDRAWS: usize = 16;

/// Runs one open-loop group until the drive's end (or a stop): its measurements and how
/// it kept its schedule.
pub async fn paced(drive: Arc<Drive>, mix: Mix, rate: u32, slots: u32, seed: u64) -> anyhow::Result<(Stats, Pace)> {
    let measured = Arc::new(Mutex::new((Stats::new()?, Pace { rate, ..Pace::default() })));
    let slots = Arc::new(Semaphore::new(slots as usize));
    let start = Instant::now();
    let due_at = |k: u64| start + Duration::from_secs_f64(k as f64 / f64::from(rate));
    let mut rng = Rng::new(seed);
    let mut calls = tokio::task::JoinSet::new();
    for k in 0.. {
        let due = due_at(k);
        if due >= drive.until || drive.live.stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.context("the slots of the open loop closed")?,
            () = tokio::time::sleep_until(drive.until.into()) => break,
        };
        let mut call_rng = Rng::new(rng.next_u64());
        let (drive, measured, mix) = (drive.clone(), measured.clone(), mix.clone());
        calls.spawn(async move {
            let lag = due.elapsed();
            // A kind with no conversation in a status it allows is drawn again, as the
            // closed loop does, so the schedule's slot still makes a call.
            let mut skipped = Vec::new();
            let mut made = None;
            for _ in 0..REDRAWS {
                let kind = mix.pick(call_rng.below(mix.total()));
                made = drive.call(drive.next_target(), kind, &mut call_rng, lag).await;
                if made.is_some() {
                    break;
                }
                skipped.push(kind);
            }
            drop(slot);
            if due < drive.measure_from {
                return;
            }
            let mut guard = measured.lock().unwrap_or_else(|e| e.into_inner());
            let (stats, pace) = &mut *guard;
            skipped.into_iter().for_each(|kind| stats.skip(kind));
            if let Some(made) = made {
                pace.started += 1;
                pace.late += u64::from(lag >= LATE);
                made.iter().for_each(|(kind, answer)| stats.record(*kind, answer));
            }
        });
        // Reap the finished calls as we go (a panic surfaces here).
        while let Some(done) = calls.try_join_next() {
            done.context("an open-loop call panicked")?;
        }
    }
    while let Some(done) = calls.join_next().await {
        done.context("an open-loop call panicked")?;
    }
    // Calls due in the measured window: from its start to the end (or the stop).
    let end = Instant::now().min(drive.until);
    let before = |t: Instant| (t.saturating_duration_since(start).as_secs_f64() * f64::from(rate)).ceil() as u64;
    let mut guard = measured.lock().unwrap_or_else(|e| e.into_inner());
    guard.1.due = before(end).saturating_sub(before(drive.measure_from));
    Ok((std::mem::replace(&mut guard.0, Stats::new()?), guard.1))
}
