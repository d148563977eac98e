#!/usr/bin/env node
/* Checks `vitlab-cli export --format onnx` in ONNX Runtime (onnxruntime-node, the CPU provider)
 * against `vitlab-cli forward` on the same images, and the exported real ViT-Ti on the ImageNet
 * samples against `vitlab-cli classify` and the samples' labels.
 *
 *   NODE_PATH=build/interop-node/node_modules node tests/interop/check_onnx.js \
 *       --cli build/app/vitlab-cli --shared ../shared [--only NAME[,NAME...]] [--keep]
 *
 * --only runs the named cases (and trains only the run folders they need), e.g.
 * --only stem-conv,stem-mbconv,hybrid-s,hybrid-r2,stem-conv-48,hybrid-s-48,stem-conv-run,
 * stem-mbconv-run; "imagenet" is the ImageNet check.
 *
 * Per source and pooling: export, forward, then the ONNX model on the whole batch and on its
 * first image alone (the batch dimension is dynamic); logits / values, features and (OpenCLIP)
 * embedding must agree within 1e-4 max abs. The ImageNet images are preprocessed from the ONNX
 * file's own metadata_props (tests/interop/onnx_preprocess.py, PIL: resize the shorter side to
 * input_size / crop_pct with the named interpolation, center crop, mean / std), as a deployment
 * would. Prints one line per check and "N passed, N failed"; exits 1 when anything failed. */
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const { execFileSync } = require('child_process');

const TOL = 1e-4;
const HERE = __dirname;
const ROOT = path.dirname(path.dirname(HERE));

function parseArgs () {
  const a = { cli: path.join(ROOT, 'build/app/vitlab-cli'), shared: path.join(ROOT, '../shared'),
              only: null, keep: false, python: '/usr/bin/python3' };
  const v = process.argv.slice(2);
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '--cli') a.cli = v[++i];
    else if (v[i] === '--shared') a.shared = v[++i];
    else if (v[i] === '--only') a.only = v[++i].split(',');
    else if (v[i] === '--python') a.python = v[++i];
    else if (v[i] === '--keep') a.keep = true;
    else { console.error(`check_onnx.js: unknown argument ${v[i]}`); process.exit(2); }
  }
  return a;
}

/* safetensors: 8-byte little-endian header length, JSON header, raw little-endian data */
function readSafetensors (file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const out = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [b, e] = t.data_offsets;
    const raw = buf.subarray(8 + n + b, 8 + n + e);
    let data;
    if (t.dtype === 'F32') {
      data = new Float32Array(raw.length / 4);
      for (let i = 0; i < data.length; i++) data[i] = raw.readFloatLE(4 * i);
    } else if (t.dtype === 'I64') {
      data = new BigInt64Array(raw.length / 8);
      for (let i = 0; i < data.length; i++) data[i] = raw.readBigInt64LE(8 * i);
    } else continue;
    out[name] = { shape: t.shape, data };
  }
  return out;
}

/* One F32 tensor as a safetensors file. */
function writeSafetensors (file, name, shape, data) {
  const bytes = Buffer.alloc(4 * data.length);
  data.forEach((v, i) => bytes.writeFloatLE(v, 4 * i));
  let header = JSON.stringify({ [name]: { dtype: 'F32', shape, data_offsets: [0, bytes.length] } });
  header += ' '.repeat((8 - header.length % 8) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(header), bytes]));
}

function maxAbsDiff (a, b) {
  if (a.length !== b.length) return Infinity;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = d;   /* NaN counts as infinitely far */
    if (Number.isNaN(d)) return Infinity;
  }
  return m;
}

function argmax (a, off, n) {
  let best = 0;
  for (let i = 1; i < n; i++) if (a[off + i] > a[off + best]) best = i;
  return best;
}

class Results {
  constructor () { this.passed = 0; this.failed = 0; }
  add (source, check, ok, detail) {
    if (ok) this.passed++; else this.failed++;
    console.log(`${ok ? 'PASS' : 'FAIL'}  ${source.padEnd(26)} ${check.padEnd(24)} ${detail}`);
  }
}

async function main () {
  const args = parseArgs();
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    console.error(`check_onnx.js: cannot load onnxruntime-node (set NODE_PATH to the node_modules ` +
                  `holding it; 'make interop' installs it into build/interop-node): ${e.message}`);
    process.exit(1);
  }
  const S = args.shared;
  const D = path.join(ROOT, 'tests/data');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vitlab-onnx-'));
  const res = new Results();
  const cli = (...a) => execFileSync(args.cli, a, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const wanted = (name) => !args.only || args.only.includes(name);

  /* [name, source, images file, pools (null: the model's own)] */
  const cases = [
    ['vit-timm-tiny', `${S}/fixtures/vit-timm-tiny`, `${S}/fixtures/vit-timm-tiny/inputs.safetensors`, ['token', 'avg', 'max']],
    ['vit-tiny-real', `${S}/weights/vit-tiny-augreg-in1k`, `${S}/fixtures/vit-tiny-real/inputs.safetensors`, [null, 'avg']],
  ];
  for (const fam of ['fam-deit-dist', 'fam-hf-dino', 'fam-hf-vit', 'fam-openclip', 'fam-openclip-gelu',
                     'fam-timm-gap', 'fam-timm-reg-ls', 'fam-torchvision'])
    cases.push([fam, `${D}/${fam}`, `${D}/${fam}/inputs.safetensors`,
                fam === 'fam-timm-reg-ls' || fam === 'fam-deit-dist' ? [null, 'avg', 'max'] : [null]]);
  /* torchvision saves no config and the fixture's 4 heads cannot be read off width 32: a copy
   * beside a config.json naming them (as tests/test-families.c does) */
  const tv = cases.find((c) => c[0] === 'fam-torchvision');
  fs.mkdirSync(path.join(tmp, 'fam-torchvision'));
  fs.copyFileSync(path.join(tv[1], 'model.safetensors'), path.join(tmp, 'fam-torchvision/model.safetensors'));
  fs.writeFileSync(path.join(tmp, 'fam-torchvision/config.json'), '{"num_heads": 4}');
  tv[1] = path.join(tmp, 'fam-torchvision');
  /* the fixture with a preprocessing size of 48 (native 32): the graph takes 48 with pos_embed
   * resampled to the 6x6 grid, as vitlab's forward resamples it */
  const t48 = path.join(tmp, 'vit-timm-tiny-48');
  fs.mkdirSync(t48);
  fs.copyFileSync(`${S}/fixtures/vit-timm-tiny/model.safetensors`, path.join(t48, 'model.safetensors'));
  const cfg48 = JSON.parse(fs.readFileSync(`${S}/fixtures/vit-timm-tiny/config.json`, 'utf8'));
  cfg48.pretrained_cfg.input_size = [3, 48, 48];
  fs.writeFileSync(path.join(t48, 'config.json'), JSON.stringify(cfg48));
  cases.push(['vit-timm-tiny-48', t48, `${S}/fixtures/vit-timm-tiny/inputs.safetensors:images48`, [null]]);
  /* the families read from other layouts: transformers' DeiT, CLIP and DINOv2, Google's .npz */
  for (const fam of ['fam-hf-deit', 'fam-hf-clip', 'fam-hf-dinov2', 'fam-hf-dinov2-reg', 'fam-hf-siglip'])
    cases.push([fam, `${D}/${fam}`, `${D}/${fam}/inputs.safetensors`, [null]]);
  /* SigLIP's attention pool (map) and tanh GELU, and the same backbone pooled by the mean */
  cases.push(['fam-timm-siglip', `${D}/fam-timm-siglip`, `${D}/fam-timm-siglip/inputs.safetensors`, [null, 'avg']]);
  for (const fam of ['fam-jax-augreg', 'fam-jax-bv-gap', 'fam-jax-bv-tok', 'fam-jax-siglip'])
    cases.push([fam, `${D}/${fam}/model.npz`, `${D}/${fam}/inputs.safetensors`, [null]]);
  /* Meta's DINOv2 with registers (converted at load), beside a config.json naming its 2 heads;
   * transformers' DINOv2 at a processor crop of 16 (native 24): layer scale and a resampled
   * position embedding in one graph */
  const reg = path.join(tmp, 'fam-dinov2-meta-reg');
  fs.mkdirSync(reg);
  fs.copyFileSync(`${D}/fam-dinov2-meta-reg/dinov2_vits8_reg4_pretrain.pth`, path.join(reg, 'dinov2.pth'));
  fs.writeFileSync(path.join(reg, 'config.json'), '{"model_args": {"num_heads": 2}}');
  cases.push(['fam-dinov2-meta-reg', path.join(reg, 'dinov2.pth'), `${D}/fam-dinov2-meta-reg/inputs.safetensors`, [null]]);
  const dino16 = path.join(tmp, 'fam-hf-dinov2-16');
  fs.mkdirSync(dino16);
  for (const f of ['model.safetensors', 'config.json'])
    fs.copyFileSync(`${D}/fam-hf-dinov2/${f}`, path.join(dino16, f));
  fs.writeFileSync(path.join(dino16, 'preprocessor_config.json'),
                   '{"crop_size": {"height": 16, "width": 16}, "size": {"shortest_edge": 20}}');
  const dinoImages = path.join(tmp, 'dino16-images.safetensors');
  writeSafetensors(dinoImages, 'images', [2, 3, 16, 16],
                   Array.from({ length: 2 * 3 * 16 * 16 }, (_, i) => Math.sin(0.37 * i) * 1.5));
  cases.push(['fam-hf-dinov2-16', dino16, dinoImages, [null]]);
  for (const geo of ['geom-bf16', 'geom-f16', 'geom-noheads', 'geom-p4-d2-h4', 'geom-p7-d3-h2-gray'])
    cases.push([geo, `${D}/${geo}`, `${D}/${geo}/inputs.safetensors`, [null]]);
  /* a regression run with an MLP head, trained here for one epoch (a second): the graph's
   * `values` are the head's standardised outputs mapped back with the run's mean and std */
  const regRun = path.join(tmp, 'regress-run');
  if (wanted('regress-run-mlp')) cli('train', '--task', 'regress', '--head', 'mlp', '--unlock', '2', '--epochs', '1',
      '--backbone', `${S}/fixtures/vit-timm-tiny`,
      '--data', 'fashion-mnist-rotate:classes=0-1,per-class=20,val-per-class=10,max-angle=30',
      '--out', regRun);
  cases.push(['regress-run-mlp', regRun, `${S}/fixtures/vit-timm-tiny/inputs.safetensors`, [null]]);
  /* segmentation runs, one per seg head, trained here for one epoch: seg_logits (N, K, S, S),
   * the linear head at the native 32 (a 4x4 grid upsampled 8x), the upconv head at 48 (pos_embed
   * resampled to 6x6, two transposed convolutions, a LayerNorm over channels, then 2x) */
  for (const [head, size, images] of [['linear', 32, 'images'], ['upconv', 48, 'images48']]) {
    const run = path.join(tmp, `segment-run-${head}`);
    if (wanted(`segment-run-${head}`)) cli('train', '--task', 'segment', '--seg-head', head, '--img-size', String(size),
        '--unlock', '1', '--epochs', '1', '--backbone', `${S}/fixtures/vit-timm-tiny`,
        '--data', `fashion-mnist-scenes:train=16,val=8,size=${size}`, '--out', run);
    cases.push([`segment-run-${head}`, run, `${S}/fixtures/vit-timm-tiny/inputs.safetensors:${images}`, [null]]);
  }
  /* a detection run (FCOS head, trained here for one epoch at 48: a 6x6 grid): the three head
   * outputs (N, 36, K), (N, 36, 4), (N, 36, 1) as torchvision's FCOSHead returns them */
  const detRun = path.join(tmp, 'detect-run');
  if (wanted('detect-run')) cli('train', '--task', 'detect', '--img-size', '48', '--unlock', '2', '--epochs', '1',
      '--backbone', `${S}/fixtures/vit-timm-tiny`,
      '--data', 'fashion-mnist-scenes:train=16,val=8,size=48', '--out', detRun);
  cases.push(['detect-run', detRun, `${S}/fixtures/vit-timm-tiny/inputs.safetensors:images48`, [null]]);
  /* CNN stems in place of the patch embedding (vl-stem.h): the fixtures of each kind
   * (tests/data/gen-stems.py: vitlab's conv and mbconv stems, timm's hybrid ResNetV2 with and
   * without stages), and runs whose new conv / mbconv stem was trained here alone with the head
   * for one epoch (BatchNorm's running statistics moved by the training) */
  for (const st of ['stem-conv', 'stem-mbconv', 'hybrid-s', 'hybrid-r2'])
    cases.push([st, `${D}/${st}`, `${D}/${st}/inputs.safetensors`, st === 'stem-mbconv' ? [null, 'avg'] : [null]]);
  /* stem-conv and hybrid-s at a preprocessing size of 48 (their native 32 and 24): the position
   * embedding resampled, timm's same padding computed for 48 */
  for (const st of ['stem-conv', 'hybrid-s']) {
    const dir = path.join(tmp, `${st}-48`);
    fs.mkdirSync(dir);
    fs.copyFileSync(`${D}/${st}/model.safetensors`, path.join(dir, 'model.safetensors'));
    const cfg = JSON.parse(fs.readFileSync(`${D}/${st}/config.json`, 'utf8'));
    cfg.pretrained_cfg.input_size = [3, 48, 48];
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(cfg));
    cases.push([`${st}-48`, dir, `${S}/fixtures/vit-timm-tiny/inputs.safetensors:images48`, [null]]);
  }
  for (const kind of ['conv', 'mbconv']) {
    const run = path.join(tmp, `stem-${kind}-run`);
    if (wanted(`stem-${kind}-run`)) {
      cli('train', '--stem', kind, '--train-groups', 'stem,head', '--epochs', '1', '--backbone',
          `${S}/fixtures/vit-timm-tiny`, '--data', 'fashion-mnist:per-class=8,val-per-class=4',
          '--out', run);
    }
    cases.push([`stem-${kind}-run`, run, `${S}/fixtures/vit-timm-tiny/inputs.safetensors`, [null]]);
  }

  for (const [name, src, imagesFile, pools] of cases) {
    if (!wanted(name)) continue;
    for (const pool of pools) {
      const label = pool ? `${name}/${pool}` : name;
      const onnxPath = path.join(tmp, `${label.replace('/', '-')}.onnx`);
      const fwdPath = path.join(tmp, `${label.replace('/', '-')}.forward.safetensors`);
      const poolArg = pool ? ['--pool', pool] : [];
      try {
        cli('export', src, '--format', 'onnx', ...poolArg, '--out', onnxPath);
        cli('forward', src, '--images', imagesFile,
            ...poolArg, '--out', fwdPath);
      } catch (e) {
        res.add(label, 'export + forward', false, (e.stderr || e.message).trim());
        continue;
      }
      const ref = readSafetensors(fwdPath);
      const [imagesPath, tensor] = imagesFile.split(':');
      const images = readSafetensors(imagesPath)[tensor || 'images'];
      const session = await ort.InferenceSession.create(onnxPath, { executionProviders: ['cpu'] });
      const [B, C, H, W] = images.shape;
      const per = C * H * W;
      const full = await session.run({ pixel_values: new ort.Tensor('float32', images.data, [B, C, H, W]) });
      const one = await session.run({ pixel_values: new ort.Tensor('float32', images.data.slice(0, per), [1, C, H, W]) });
      const outputs = session.outputNames;
      const pairs = [['features', 'features'], ['embedding', 'embedding']];
      if (outputs.includes('logits')) pairs.push(['logits', 'logits']);
      if (outputs.includes('values')) pairs.push(['values', 'logits']);
      if (outputs.includes('seg_logits')) pairs.push(['seg_logits', 'seg_logits']);
      for (const o of ['cls_logits', 'bbox_regression', 'bbox_ctrness'])
        if (outputs.includes(o)) pairs.push([o, o]);
      /* and against PyTorch where the fixtures hold its outputs (../shared/fixtures/README.md) */
      const torchRef = {
        'vit-timm-tiny-48': [`${S}/fixtures/vit-timm-tiny`, 'logits_token_48'],
        'vit-timm-tiny/token': [`${S}/fixtures/vit-timm-tiny`, 'logits_token'],
        'vit-timm-tiny/avg': [`${S}/fixtures/vit-timm-tiny`, 'logits_avg'],
        'vit-timm-tiny/max': [`${S}/fixtures/vit-timm-tiny`, 'logits_max'],
        'vit-tiny-real': [`${S}/fixtures/vit-tiny-real`, 'logits_token'],
        'vit-tiny-real/avg': [`${S}/fixtures/vit-tiny-real`, 'logits_avg'],
        /* gen-stems.py's PyTorch modules in eval mode (BatchNorm on the running statistics) */
        'stem-conv': [`${D}/stem-conv`, 'logits_eval'],
        'stem-mbconv': [`${D}/stem-mbconv`, 'logits_eval'],
        'hybrid-s': [`${D}/hybrid-s`, 'logits_eval'],
        'hybrid-r2': [`${D}/hybrid-r2`, 'logits_eval'],
      }[label];
      if (torchRef) {
        const want = readSafetensors(`${torchRef[0]}/expected.safetensors`)[torchRef[1]].data;
        const d = maxAbsDiff(full.logits.data, want);
        res.add(label, 'logits vs PyTorch', d <= TOL, `max abs diff ${d.toExponential(2)} (${torchRef[1]})`);
      }
      for (const [out, key] of pairs) {
        if (!outputs.includes(out) && !(key in ref)) continue;
        if (!outputs.includes(out) || !(key in ref)) {
          res.add(label, out, false, `present in ${outputs.includes(out) ? 'ONNX' : 'vitlab forward'} only`);
          continue;
        }
        let want = ref[key].data;
        if (out === 'values') {
          /* forward gives the standardised head; the graph maps it to the targets' units */
          const meta = JSON.parse(fs.readFileSync(path.join(src, 'run.json'), 'utf8'));
          want = unstandardise(want, meta);
        }
        const d = maxAbsDiff(full[out].data, want);
        if (out === 'values') {
          /* the head really is unstandardised: raw head outputs would not pass */
          const raw = maxAbsDiff(full[out].data, ref[key].data);
          res.add(label, 'values != raw head', raw > 100 * TOL, `max abs diff to the standardised head ${raw.toExponential(2)}`);
        }
        /* the scale of what is compared, so that a near-zero output cannot pass unseen */
        const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
        res.add(label, `${out} vs forward`, d <= TOL && scale > 100 * d,
                `max abs diff ${d.toExponential(2)}, max |forward| ${scale.toExponential(2)} (B=${B}, ${full[out].dims.join('x')})`);
        const n = want.length / B;
        const d1 = maxAbsDiff(one[out].data, want.slice(0, n));
        res.add(label, `${out} batch of 1`, d1 <= TOL, `max abs diff ${d1.toExponential(2)}`);
      }
    }
  }

  if (wanted('imagenet'))
    await imagenet(args, ort, cli, tmp, res);

  if (!args.keep) fs.rmSync(tmp, { recursive: true, force: true });
  else console.log(`kept ${tmp}`);
  console.log(`${res.passed} passed, ${res.failed} failed`);
  process.exit(res.failed ? 1 : 0);
}

/* run.json's regression targets: values = z * std + mean */
function unstandardise (z, run) {
  const t = run.task || {};
  const mean = t.mean, std = t.std;
  if (!mean || !std) throw new Error('run.json: no target mean / std');
  const K = mean.length, out = new Float32Array(z.length);
  for (let i = 0; i < z.length; i++) out[i] = z[i] * std[i % K] + mean[i % K];
  return out;
}

async function imagenet (args, ort, cli, tmp, res) {
  const model = `${args.shared}/weights/vit-tiny-augreg-in1k`;
  const dir = `${args.shared}/datasets/imagenet-samples`;
  const onnxPath = path.join(tmp, 'vit-tiny-imagenet.onnx');
  cli('export', model, '--format', 'onnx', '--out', onnxPath);
  const files = fs.readdirSync(dir).filter((f) => /\.jpe?g$/i.test(f)).sort();
  const labels = {};
  for (const line of fs.readFileSync(path.join(dir, 'labels.tsv'), 'utf8').split('\n').slice(1)) {
    const [f, idx] = line.split('\t');
    if (f) labels[f] = Number(idx);
  }
  /* vitlab's own top-1 */
  const vitlab = {};
  for (const line of cli('classify', model, ...files.map((f) => path.join(dir, f))).split('\n')) {
    const [f, idx] = line.split('\t');
    if (f) vitlab[path.basename(f)] = Number(idx);
  }
  const pixPath = path.join(tmp, 'imagenet-pixels.safetensors');
  execFileSync(args.python, [path.join(HERE, 'onnx_preprocess.py'), onnxPath, pixPath,
                             ...files.map((f) => path.join(dir, f))]);
  const px = readSafetensors(pixPath).images;
  const session = await ort.InferenceSession.create(onnxPath, { executionProviders: ['cpu'] });
  const out = await session.run({ pixel_values: new ort.Tensor('float32', px.data, px.shape) });
  const K = out.logits.dims[1];
  let same = 0, right = 0;
  files.forEach((f, b) => {
    const top = argmax(out.logits.data, b * K, K);
    if (top === vitlab[f]) same++;
    if (top === labels[f]) right++;
    res.add(`imagenet/${f}`, 'ONNX top-1', top === vitlab[f] && top === labels[f],
            `ONNX ${top}, vitlab-cli classify ${vitlab[f]}, label ${labels[f]}`);
  });
  console.log(`imagenet: ONNX top-1 = vitlab's on ${same}/${files.length}, = label on ${right}/${files.length}`);
}

main().catch((e) => { console.error(`check_onnx.js: ${e.stack || e}`); process.exit(1); });
