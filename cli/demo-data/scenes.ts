import { intIn, pick, uniform, type Rng } from './rng.ts';

/** One synthetic tile: RGB pixels (HWC, uint8) and captions that are all true of it. */
export interface SceneSample {
  rgb: Uint8Array;
  captions: string[];
}

/** A land-cover class: paints a tile with random variation and describes what it painted. */
export interface Scene {
  label: string;
  sample(rng: Rng, size: number): SceneSample;
}

type Rgb = [number, number, number];

class Canvas {
  readonly rgb: Uint8Array;
  constructor(readonly size: number) {
    this.rgb = new Uint8Array(size * size * 3);
  }

  paint(fn: (x: number, y: number) => Rgb): void {
    for (let y = 0; y < this.size; y++) {
      for (let x = 0; x < this.size; x++) {
        const [r, g, b] = fn(x, y);
        const i = 3 * (y * this.size + x);
        this.rgb[i] = clamp(r);
        this.rgb[i + 1] = clamp(g);
        this.rgb[i + 2] = clamp(b);
      }
    }
  }
}

const clamp = (v: number): number => Math.max(0, Math.min(255, Math.round(v)));
const mix = (a: Rgb, b: Rgb, t: number): Rgb => [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t, a[2] + (b[2] - a[2]) * t];
const jitter = (rng: Rng, c: Rgb, d: number): Rgb => [c[0] + uniform(rng, -d, d), c[1] + uniform(rng, -d, d), c[2] + uniform(rng, -d, d)];

/** Smooth value noise in [0,1]: a random lattice of `cells` per side, bilinearly interpolated with smoothstep. */
function valueNoise(rng: Rng, size: number, cellsWanted: number): (x: number, y: number) => number {
  const cells = Math.max(1, Math.round(cellsWanted));
  const n = cells + 2;
  const lattice = Float32Array.from({ length: n * n }, () => rng());
  const s = (t: number): number => t * t * (3 - 2 * t);
  return (x, y) => {
    const fx = (x / size) * cells;
    const fy = (y / size) * cells;
    const ix = Math.floor(fx);
    const iy = Math.floor(fy);
    const tx = s(fx - ix);
    const ty = s(fy - iy);
    const at = (i: number, j: number): number => lattice[j * n + i]!;
    const top = at(ix, iy) + (at(ix + 1, iy) - at(ix, iy)) * tx;
    const bottom = at(ix, iy + 1) + (at(ix + 1, iy + 1) - at(ix, iy + 1)) * tx;
    return top + (bottom - top) * ty;
  };
}

/** Two octaves of value noise: broad shading plus fine grain. */
function fractal(rng: Rng, size: number, cells: number): (x: number, y: number) => number {
  const coarse = valueNoise(rng, size, cells);
  const fine = valueNoise(rng, size, cells * 4);
  return (x, y) => 0.7 * coarse(x, y) + 0.3 * fine(x, y);
}

const VIEWS = ['a satellite image of', 'an aerial view of', 'a remote sensing image showing', 'a top-down photo of', 'overhead imagery of'];

/** Captions from subject phrases and detail phrases: varied wording, every one true of the tile. */
function describe(rng: Rng, subjects: string[], details: string[]): string[] {
  const out = new Set<string>();
  const want = intIn(rng, 1, 5);
  for (let tries = 0; out.size < want && tries < 20; tries++) {
    const detail = details.length && rng() < 0.6 ? ` ${pick(rng, details)}` : '';
    out.add(`${pick(rng, VIEWS)} ${pick(rng, subjects)}${detail}`);
  }
  return [...out];
}

const water: Scene = {
  label: 'water',
  sample(rng, size) {
    const c = new Canvas(size);
    const deep = jitter(rng, [20, 55, 110], 15);
    const shallow = jitter(rng, [45, 110, 160], 15);
    const shade = fractal(rng, size, 3);
    const wavy = rng() < 0.5;
    const angle = uniform(rng, 0, Math.PI);
    const freq = uniform(rng, 0.5, 0.9);
    c.paint((x, y) => {
      const wave = wavy ? 14 * Math.sin(freq * (x * Math.cos(angle) + y * Math.sin(angle))) : 0;
      const [r, g, b] = mix(deep, shallow, shade(x, y));
      return [r + wave * 0.5, g + wave, b + wave];
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['open water', 'a lake', 'the sea', 'deep blue water', 'a body of water'], wavy ? ['with ripples on the surface', 'with waves'] : ['with a smooth surface']),
    };
  },
};

const forest: Scene = {
  label: 'forest',
  sample(rng, size) {
    const c = new Canvas(size);
    const dark = jitter(rng, [18, 55, 22], 10);
    const light = jitter(rng, [60, 120, 50], 12);
    const canopy = valueNoise(rng, size, Math.max(4, size / 5));
    const shade = valueNoise(rng, size, 2);
    const river = rng() < 0.35;
    const rx = uniform(rng, 0.3, 0.7) * size;
    const ramp = uniform(rng, 2, 6);
    c.paint((x, y) => {
      if (river && Math.abs(x - rx - ramp * Math.sin(y / 6)) < 1.6) return [50, 90, 140];
      return mix(dark, light, 0.75 * canopy(x, y) + 0.25 * shade(x, y));
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['a dense forest', 'woodland', 'a green forest canopy', 'trees covering the land', 'a forested area'], river ? ['crossed by a small river', 'with a stream running through it'] : []),
    };
  },
};

const farmland: Scene = {
  label: 'farmland',
  sample(rng, size) {
    const c = new Canvas(size);
    const palette: Rgb[] = [
      [110, 150, 60],
      [190, 170, 80],
      [140, 105, 70],
      [80, 130, 50],
      [210, 190, 110],
    ];
    const cols = intIn(rng, 2, 4);
    const rows = intIn(rng, 2, 4);
    const fields = Array.from({ length: cols * rows }, () => ({
      color: jitter(rng, pick(rng, palette), 12),
      horizontal: rng() < 0.5,
      period: intIn(rng, 2, 4),
    }));
    const grain = valueNoise(rng, size, size / 2);
    c.paint((x, y) => {
      const i = Math.min(cols - 1, Math.floor((x / size) * cols));
      const j = Math.min(rows - 1, Math.floor((y / size) * rows));
      const edge = (x * cols) % size < cols || (y * rows) % size < rows;
      if (edge) return [95, 85, 60];
      const f = fields[j * cols + i]!;
      const furrow = ((f.horizontal ? y : x) % f.period === 0 ? -18 : 0) + 12 * (grain(x, y) - 0.5);
      return [f.color[0] + furrow, f.color[1] + furrow, f.color[2] + furrow];
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['farmland', 'agricultural fields', 'a patchwork of crop fields', 'cultivated land', 'rectangular farm plots'], [`divided into ${cols * rows} fields`, 'with plough lines']),
    };
  },
};

const desert: Scene = {
  label: 'desert',
  sample(rng, size) {
    const c = new Canvas(size);
    const sand = jitter(rng, [215, 185, 130], 15);
    const shadow = jitter(rng, [170, 135, 90], 10);
    const angle = uniform(rng, 0, Math.PI);
    const freq = uniform(rng, 0.25, 0.45);
    const grain = fractal(rng, size, 3);
    c.paint((x, y) => {
      const dune = 0.5 + 0.5 * Math.sin(freq * (x * Math.cos(angle) + y * Math.sin(angle)) + 3 * grain(x, y));
      return mix(shadow, sand, 0.6 * dune + 0.4 * grain(x, y));
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['a sandy desert', 'sand dunes', 'arid desert land', 'a dry sandy area', 'barren desert'], ['with long dune ridges', 'with wind-blown sand patterns']),
    };
  },
};

const urban: Scene = {
  label: 'urban',
  sample(rng, size) {
    const c = new Canvas(size);
    const dense = rng() < 0.5;
    const block = dense ? intIn(rng, 5, 7) : intIn(rng, 9, 12);
    const street = dense ? 1 : 2;
    const roofs: Rgb[] = [
      [150, 150, 155],
      [175, 90, 70],
      [200, 200, 195],
      [110, 110, 120],
    ];
    const cells = Math.ceil(size / block) + 1;
    const roof = Array.from({ length: cells * cells }, () => jitter(rng, pick(rng, roofs), 15));
    const ox = intIn(rng, 0, block - 1);
    const oy = intIn(rng, 0, block - 1);
    c.paint((x, y) => {
      const bx = (x + ox) % block;
      const by = (y + oy) % block;
      if (bx < street || by < street) return [70, 70, 72];
      const r = roof[Math.floor((y + oy) / block) * cells + Math.floor((x + ox) / block)]!;
      return bx === block - 1 || by === block - 1 ? mix(r, [40, 40, 40], 0.5) : r;
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['a city', 'an urban area', 'buildings and streets', 'a residential neighbourhood', 'a town on a street grid'], dense ? ['densely built up', 'with small tightly packed blocks'] : ['with large blocks and wide roads', 'sparsely built']),
    };
  },
};

const beach: Scene = {
  label: 'beach',
  sample(rng, size) {
    const c = new Canvas(size);
    const sea = jitter(rng, [40, 100, 160], 15);
    const sand = jitter(rng, [225, 205, 155], 12);
    const angle = uniform(rng, 0, 2 * Math.PI);
    const [nx, ny] = [Math.cos(angle), Math.sin(angle)];
    const wobble = valueNoise(rng, size, 3);
    c.paint((x, y) => {
      const d = (x - size / 2) * nx + (y - size / 2) * ny + 8 * (wobble(x, y) - 0.5);
      if (Math.abs(d) < 1.5) return [240, 245, 245];
      return d < 0 ? mix(sea, [20, 60, 120], Math.min(1, -d / size)) : sand;
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['a beach', 'a coastline', 'the shore where sand meets the sea', 'a sandy coast', 'a seaside beach'], ['with white surf along the shore', 'with a narrow line of foam']),
    };
  },
};

const snow: Scene = {
  label: 'snow',
  sample(rng, size) {
    const c = new Canvas(size);
    const white = jitter(rng, [240, 243, 250], 6);
    const blue = jitter(rng, [185, 200, 225], 10);
    const shade = fractal(rng, size, 3);
    const rocky = rng() < 0.5;
    const rock = valueNoise(rng, size, 5);
    c.paint((x, y) => {
      if (rocky && rock(x, y) > 0.72) return [90, 85, 85];
      return mix(blue, white, shade(x, y));
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['snow-covered ground', 'a snowfield', 'fresh white snow', 'a frozen snowy landscape', 'snowy terrain'], rocky ? ['with dark rocks showing through', 'with exposed rock'] : ['without any features']),
    };
  },
};

const clouds: Scene = {
  label: 'clouds',
  sample(rng, size) {
    const c = new Canvas(size);
    const ground = jitter(rng, [100, 120, 70], 20);
    const land = fractal(rng, size, 4);
    const cloud = fractal(rng, size, 3);
    const cover = uniform(rng, 0.35, 0.55);
    c.paint((x, y) => {
      const t = Math.max(0, Math.min(1, (cloud(x, y) - cover) * 5));
      const g = mix(ground, [ground[0] * 0.6, ground[1] * 0.6, ground[2] * 0.6], land(x, y));
      return mix(g, [248, 248, 250], t);
    });
    return {
      rgb: c.rgb,
      captions: describe(rng, ['thick clouds', 'cloud cover', 'white clouds over the ground', 'a cloudy scene', 'clouds hiding the land'], ['with patches of land visible', 'partly obscured by cloud']),
    };
  },
};

export const SCENES: readonly Scene[] = [water, forest, farmland, desert, urban, beach, snow, clouds];
