/* vl-rng.h: a small seeded generator (splitmix64 seeding xoshiro256**), for reproducible
 * initialisation and shuffling. */
#pragma once

#include <math.h>
#include <stdint.h>

typedef struct { uint64_t s[4]; } VlRng;

static inline uint64_t
vl_rng_splitmix (uint64_t *x)
{
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static inline void
vl_rng_seed (VlRng *r, uint64_t seed)
{
  for (int i = 0; i < 4; i++)
    r->s[i] = vl_rng_splitmix (&seed);
}

static inline uint64_t
vl_rng_next (VlRng *r)
{
  uint64_t *s = r->s;
  uint64_t t = s[1] << 17, x = s[1] * 5;
  uint64_t result = ((x << 7) | (x >> 57)) * 9;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3];
  s[2] ^= t;
  s[3] = (s[3] << 45) | (s[3] >> 19);
  return result;
}

/* Uniform in [0, 1). */
static inline double
vl_rng_uniform (VlRng *r)
{
  return (vl_rng_next (r) >> 11) * (1.0 / 9007199254740992.0);
}

static inline double
vl_rng_normal (VlRng *r)
{
  double u1 = vl_rng_uniform (r), u2 = vl_rng_uniform (r);
  return sqrt (-2.0 * log (1.0 - u1)) * cos (6.283185307179586 * u2);
}

/* Normal(0, std) truncated to [-2, 2] (absolute bounds), as timm's trunc_normal_(std=std). */
static inline double
vl_rng_trunc_normal (VlRng *r, double std)
{
  for (;;)
    {
      double z = vl_rng_normal (r) * std;
      if (z >= -2.0 && z <= 2.0)
        return z;
    }
}
