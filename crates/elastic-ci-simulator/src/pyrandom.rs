//! Python's `random.Random`, draw for draw: the Mersenne Twister MT19937 seeded the way
//! CPython seeds it from an integer, and the three draws the reference traces use
//! (`random()`, `expovariate()`, `choice()`).
//!
//! The day-long reference trace (T5) is defined by the draws of `random.Random(42)`, so
//! reproducing them exactly is what makes the committed trace match its definition
//! (1103 jobs) without Python.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// The generator state of `random.Random(seed)`.
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)` for a non-negative integer seed: CPython splits the
    /// integer into 32-bit words (least significant first) and feeds them to
    /// `init_by_array`.
    pub fn new(seed: u64) -> PyRandom {
        let low = u32::try_from(seed & 0xffff_ffff).unwrap_or(u32::MAX);
        let high = u32::try_from(seed >> 32).unwrap_or(u32::MAX);
        let key: &[u32] = if high == 0 { &[low] } else { &[low, high] };
        let mut generator = PyRandom { state: [0; N], index: N };
        generator.init_by_array(key);
        generator
    }

    fn init_genrand(&mut self, seed: u32) {
        self.state[0] = seed;
        for i in 1..N {
            let previous = self.state[i - 1];
            self.state[i] = 1_812_433_253_u32
                .wrapping_mul(previous ^ (previous >> 30))
                .wrapping_add(u32::try_from(i).unwrap_or(0));
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mut i = 1;
        let mut j = 0;
        for _ in 0..N.max(key.len()) {
            let previous = self.state[i - 1];
            self.state[i] = (self.state[i] ^ (previous ^ (previous >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(u32::try_from(j).unwrap_or(0));
            i += 1;
            j += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let previous = self.state[i - 1];
            self.state[i] = (self.state[i]
                ^ (previous ^ (previous >> 30)).wrapping_mul(1_566_083_941))
            .wrapping_sub(u32::try_from(i).unwrap_or(0));
            i += 1;
            if i >= N {
                self.state[0] = self.state[N - 1];
                i = 1;
            }
        }
        // The most significant bit is 1, assuring a non-zero initial state.
        self.state[0] = 0x8000_0000;
    }

    /// The next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for k in 0..N {
            let y = (self.state[k] & UPPER_MASK) | (self.state[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 0 { 0 } else { MATRIX_A };
            self.state[k] = self.state[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// `random()`: a float in [0, 1) with 53 random bits.
    pub fn random(&mut self) -> f64 {
        let a = self.next_u32() >> 5;
        let b = self.next_u32() >> 6;
        (f64::from(a) * 67_108_864.0 + f64::from(b)) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `expovariate(lambd)`: an exponential variate with rate `lambd`.
    pub fn expovariate(&mut self, lambd: f64) -> f64 {
        -(1.0 - self.random()).ln() / lambd
    }

    /// `getrandbits(k)` for `k` from 1 to 32.
    fn getrandbits(&mut self, k: u32) -> u32 {
        self.next_u32() >> (32 - k)
    }

    /// `_randbelow(n)`: uniform in `0..n` by rejection sampling on `n.bit_length()` bits.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        if n <= 1 {
            return 0;
        }
        let bits = 32 - n.leading_zeros();
        loop {
            let candidate = self.getrandbits(bits);
            if candidate < n {
                return candidate;
            }
        }
    }

    /// `choice(seq)`.
    pub fn choice<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
        &items[self.randbelow(n) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values printed by CPython 3.11:
    // r = random.Random(42); [r.random() for _ in range(3)], r.getrandbits(32)
    #[test]
    fn matches_cpython_for_seed_42() {
        let mut generator = PyRandom::new(42);
        assert_eq!(generator.random(), 0.6394267984578837);
        assert_eq!(generator.random(), 0.025010755222666936);
        assert_eq!(generator.random(), 0.27502931836911926);
        assert_eq!(generator.next_u32(), 958_682_846);
    }

    // r = random.Random(7); [r.choice([60, 120, 300, 600, 900]) for _ in range(8)],
    // r.expovariate(0.5)
    #[test]
    fn choice_and_expovariate_match_cpython() {
        let mut generator = PyRandom::new(7);
        let items = [60, 120, 300, 600, 900];
        let picks: Vec<i32> = (0..8).map(|_| *generator.choice(&items)).collect();
        assert_eq!(picks, [300, 120, 600, 60, 60, 900, 60, 300]);
        assert_eq!(generator.expovariate(0.5), 1.74832161447116);
    }

    // random.Random(2**40 + 5).random()
    #[test]
    fn seeds_wider_than_32_bits_use_two_words() {
        assert_eq!(PyRandom::new((1 << 40) + 5).random(), 0.5043802970418443);
    }
}
