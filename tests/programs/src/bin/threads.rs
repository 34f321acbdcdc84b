//! `threads`: std threads in a guest: a Mutex/Condvar bounded queue with four producers and
//! two consumers, `thread::scope` workers summing disjoint slices, thread-local storage, and
//! a joined thread's return value. Prints a deterministic result and exits 0 when every
//! check holds, 1 otherwise.

use std::collections::VecDeque;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

/// Producer threads.
const PRODUCERS: u64 = 4;
/// Consumer threads.
const CONSUMERS: u64 = 2;
/// Items each producer sends.
const ITEMS: u64 = 2500;
/// Queue capacity (small, so producers block on the condition variable).
const CAPACITY: usize = 8;

/// A bounded multi-producer multi-consumer queue; `None` in the queue means "stop".
struct Queue {
    items: Mutex<VecDeque<Option<u64>>>,
    not_empty: Condvar,
    not_full: Condvar,
}

impl Queue {
    fn push(&self, item: Option<u64>) {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        while q.len() >= CAPACITY {
            q = self.not_full.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.push_back(item);
        self.not_empty.notify_one();
    }

    fn pop(&self) -> Option<u64> {
        let mut q = self.items.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(item) = q.pop_front() {
                self.not_full.notify_one();
                return item;
            }
            q = self.not_empty.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The value producer `p` sends as its `i`-th item.
fn item(p: u64, i: u64) -> u64 {
    p * 1_000_003 + i * i
}

thread_local! {
    static LOCAL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn main() -> ExitCode {
    let mut ok = true;

    // 1. Producer/consumer over a Mutex + Condvar queue.
    let queue = Arc::new(Queue {
        items: Mutex::new(VecDeque::new()),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    let consumed = Arc::new(AtomicU64::new(0));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let queue = Arc::clone(&queue);
            thread::spawn(move || {
                for i in 0..ITEMS {
                    queue.push(Some(item(p, i)));
                }
            })
        })
        .collect();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let consumed = Arc::clone(&consumed);
            thread::spawn(move || {
                let mut sum = 0u64;
                while let Some(v) = queue.pop() {
                    sum = sum.wrapping_add(v);
                    consumed.fetch_add(1, Ordering::Relaxed);
                }
                sum
            })
        })
        .collect();
    let mut joined = true;
    for p in producers {
        joined &= p.join().is_ok();
    }
    for _ in 0..CONSUMERS {
        queue.push(None);
    }
    let mut sum = 0u64;
    for c in consumers {
        match c.join() {
            Ok(s) => sum = sum.wrapping_add(s),
            Err(_) => joined = false,
        }
    }
    let expected: u64 = (0..PRODUCERS)
        .flat_map(|p| (0..ITEMS).map(move |i| item(p, i)))
        .fold(0u64, u64::wrapping_add);
    let count = consumed.load(Ordering::Relaxed);
    let good = joined && sum == expected && count == PRODUCERS * ITEMS;
    ok &= good;
    println!(
        "queue: producers={PRODUCERS} consumers={CONSUMERS} items={count} sum={sum} {}",
        verdict(good)
    );

    // 2. Scoped threads summing disjoint chunks of a borrowed vector.
    let data: Vec<u64> = (1..=100_000).collect();
    let mut partial = [0u64; 4];
    thread::scope(|s| {
        for (chunk, out) in data.chunks(data.len() / 4).zip(partial.iter_mut()) {
            s.spawn(move || *out = chunk.iter().sum());
        }
    });
    let total: u64 = partial.iter().sum();
    let good = total == 100_000 * 100_001 / 2;
    ok &= good;
    println!("scope: partial={partial:?} total={total} {}", verdict(good));

    // 3. Thread-local storage is per thread; a joined thread returns its value.
    LOCAL.with(|l| l.set(7));
    let child = thread::Builder::new().name("tls-child".into()).spawn(|| {
        let before = LOCAL.with(|l| l.get());
        LOCAL.with(|l| l.set(99));
        let name = thread::current().name().map(str::to_owned);
        (before, LOCAL.with(|l| l.get()), name)
    });
    let good = match child.map(|c| c.join()) {
        Ok(Ok((before, after, name))) => {
            let main_value = LOCAL.with(|l| l.get());
            println!(
                "tls: child saw {before} then {after} as {}, main still {main_value}",
                name.as_deref().unwrap_or("?")
            );
            before == 0 && after == 99 && main_value == 7
        }
        Ok(Err(_)) => {
            println!("tls: child panicked");
            false
        }
        Err(e) => {
            println!("tls: spawn failed: {e}");
            false
        }
    };
    ok &= good;
    println!("threads: {}", if ok { "all ok" } else { "FAILED" });
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn verdict(good: bool) -> &'static str {
    if good {
        "ok"
    } else {
        "MISMATCH"
    }
}
