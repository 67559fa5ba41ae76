"""Pure-JAX transformers in multiplier form: a ViT and a GPT-2-style decoder, each a `layers.Model`.

Same contract as models.py: raw weights in a flat dict, `Model.layers` gives every weight's kind, fan-in and
multiplier, and the parameterization supplies init scale, forward multiplier and learning-rate multiplier per kind.
The blocks' weights are stacked: `blocks_q`, `blocks_k`, `blocks_v`, `blocks_o`, `blocks_mlp_in`, `blocks_mlp_out`
each hold that matrix of every block along a leading axis, and the blocks run with lax.scan, so compile time does
not grow with depth. The rules specific to transformers:

- Lookups (token embedding, learned positions, CLS token) are kind 'input' with fan-in 1. A lookup is a one-hot
  vector times a matrix, and a one-hot has norm 1, not sqrt(V): its effective fan-in is 1. So every
  parameterization draws N(0, 1) entries (pz.init_std(·, 1) = 1, SP included) and multiplies by
  pz.forward_multiplier(·, 'input', 1, N) = 1: Θ(1) coordinates, as μP wants of an input layer.
- The patch embedding is an ordinary input layer on flattened patches, fan-in patch·patch·C.
- q, k, v, o and both MLP matrices sit inside residual branches: kind 'branch', fan-in = their input dimension.
  Each block is x + b·Attn(LN(x)), x + b·MLP(LN(x)) with b = pz.branch_multiplier (β·L^(−α) under Depth-μP, L the
  number of blocks, which is Model.depth).
- Attention logits are q·k/d_head under μP and Depth-μP (`param.mean_field`) and q·k/sqrt(d_head) otherwise.
  Under μP, q and k become correlated during training, so q·k grows like d_head; 1/d_head keeps the logits Θ(1)
  (Tensor Programs V). At init the μP logits are O(1/sqrt(d_head)): attention starts near uniform.
- LayerNorm (layers.layer_norm over the last axis, eps 1e-5) has no learnable gain or bias: the parameterization's
  layer kinds cover weight matrices only. No biases anywhere, as in the rest of the package.
- The readout is kind 'readout' with fan-in N (μP: 1/N on the logits), divided by γ0 like the other models.
- Tied GPT readout (tied=True): logits = h @ Eᵀ · pz.forward_multiplier(·, 'readout', N, N) / γ0 on the raw
  embedding E, while the lookup keeps multiplier 1. E is one parameter and keeps kind 'input' (its Layer describes
  the lookup; its learning rate is the input rule; with Adam under μP 'sc' that is η0 rather than the readout's
  η0·γ0, equal at γ0 = 1). The logits still carry the readout's 1/N under μP, and the lookups stay Θ(1). Two
  consequences: under μP the logit of each input token starts Θ(1) rather than O(1/sqrt(N)) (the residual stream
  still holds E[x_t]); under SP (multiplier 1 on N(0, 1) entries) the tied logits start O(sqrt(N)), so tie only
  under a parameterization with a 1/sqrt(fan-in) multiplier (ntk, mup, depth_mup).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from superconsistency import parameterization as pz
from superconsistency.layers import Model, init_layers, layer, layer_norm

POOLS = ('cls', 'mean')
POSITIONS = ('learned', 'rotary')
ROTARY_BASE = 10000.0


def attention_scale(param: pz.Parameterization, d_head: int) -> float:
  """μP attention: 1/d_head (q·k is a sum of d_head correlated terms once trained); otherwise 1/sqrt(d_head)."""
  return 1.0 / d_head if param.mean_field else 1.0 / math.sqrt(d_head)


def rotary(x_BxTxHxD, positions_T):
  """Rotates coordinate pairs (i, i + D/2) by angle position·θ_i, θ_i = base^(−2i/D).

  Rotations compose, so the product of a query rotated by position s and a key rotated by position t depends on
  the positions only through t − s.
  """
  d = x_BxTxHxD.shape[-1]
  if d % 2:
    raise ValueError(f'rotary positions need an even head dimension, got {d}')
  half = d // 2
  dtype = x_BxTxHxD.dtype
  freqs = ROTARY_BASE ** (-jnp.arange(half, dtype=dtype) / half)
  angle_TxD2 = jnp.asarray(positions_T, dtype)[:, None] * freqs[None, :]
  cos, sin = jnp.cos(angle_TxD2)[None, :, None, :], jnp.sin(angle_TxD2)[None, :, None, :]
  x1, x2 = x_BxTxHxD[..., :half], x_BxTxHxD[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


def attention_logits(q_BxTxHxD, k_BxTxHxD, scale):
  """Per-head logits (B, H, T_q, T_k), before any mask."""
  return scale * jnp.einsum('bqhd,bkhd->bhqk', q_BxTxHxD, k_BxTxHxD)


def _check_heads(width, heads):
  if heads < 1 or width % heads:
    raise ValueError(f'width {width} is not divisible by heads {heads}')
  return width // heads


BLOCK_PARTS = ('q', 'k', 'v', 'o', 'mlp_in', 'mlp_out')


def _block_layers(param, width, depth, mlp_ratio) -> dict:
  """{blocks_<part>: Layer}: each block matrix of every block, stacked along a leading axis of `depth`."""
  part_shapes = {'q': (width, width), 'k': (width, width), 'v': (width, width), 'o': (width, width),
                 'mlp_in': (width, mlp_ratio * width), 'mlp_out': (mlp_ratio * width, width)}
  return {f'blocks_{part}': layer(param, width, 'branch', (depth, *part_shapes[part]), stacked=depth)
          for part in BLOCK_PARTS}


def _make_blocks(param, layers, width, depth, heads, causal, positions):
  """Returns blocks(params, x_BxTxN, with_activations) -> (x, {blockNN: residual stream after block NN} or {}),
  the blocks run by lax.scan over the stacked `blocks_<part>` weights."""
  d_head = _check_heads(width, heads)
  if positions == 'rotary' and d_head % 2:
    raise ValueError(f'rotary positions need an even head dimension; width {width} / heads {heads} = {d_head}')
  mult = {part: layers[f'blocks_{part}'].multiplier for part in BLOCK_PARTS}
  b = pz.branch_multiplier(param, depth)
  scale = attention_scale(param, d_head)

  def attention(w, h_BxTxN):
    B, T, _ = h_BxTxN.shape
    split = lambda z: z.reshape(B, T, heads, d_head)
    q = split(mult['q'] * (h_BxTxN @ w['q']))
    k = split(mult['k'] * (h_BxTxN @ w['k']))
    v = split(mult['v'] * (h_BxTxN @ w['v']))
    if positions == 'rotary':
      pos = jnp.arange(T)
      q, k = rotary(q, pos), rotary(k, pos)
    logits = attention_logits(q, k, scale)
    if causal:
      mask_TxT = jnp.tril(jnp.ones((T, T), bool))
      logits = jnp.where(mask_TxT, logits, jnp.finfo(logits.dtype).min)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum('bhqk,bkhd->bqhd', probs, v).reshape(B, T, width)
    return mult['o'] * (out @ w['o'])

  def mlp(w, h_BxTxN):
    z = jax.nn.gelu(mult['mlp_in'] * (h_BxTxN @ w['mlp_in']))
    return mult['mlp_out'] * (z @ w['mlp_out'])

  def blocks(params, x_BxTxN, with_activations=False):
    def block(x_BxTxN, w):
      x_BxTxN = x_BxTxN + b * attention(w, layer_norm(x_BxTxN, -1))
      x_BxTxN = x_BxTxN + b * mlp(w, layer_norm(x_BxTxN, -1))
      return x_BxTxN, (x_BxTxN if with_activations else None)

    stacked = {part: params[f'blocks_{part}'] for part in BLOCK_PARTS}
    x_BxTxN, per_block_LxBxTxN = jax.lax.scan(block, x_BxTxN, stacked)
    if not with_activations:
      return x_BxTxN, {}
    return x_BxTxN, {f'block{i:02d}': per_block_LxBxTxN[i] for i in range(depth)}

  return blocks


def vit(image_shape, num_classes: int, width: int, depth: int, param: pz.Parameterization, dtype=jnp.float32, *,
        patch: int = 4, heads: int = 4, mlp_ratio: int = 4, pool: str = 'cls') -> Model:
  """Vision transformer: patch embedding + learned positions (+ CLS token), `depth` pre-LN blocks, final LN,
  readout on the CLS token ('cls') or the mean over patch tokens ('mean'). Model.depth = number of blocks.
  Activations: `embed`, the residual stream after each block `block00`…, `readout`."""
  if pool not in POOLS:
    raise ValueError(f'unknown pool {pool!r}; allowed: {", ".join(POOLS)}')
  if depth < 1:
    raise ValueError(f'vit needs at least one block, got depth {depth}')
  h, w, c = image_shape
  if patch < 1 or h % patch or w % patch:
    raise ValueError(f'image {h}x{w} is not divisible by patch {patch}')
  num_patches = (h // patch) * (w // patch)
  num_tokens = num_patches + (pool == 'cls')
  patch_dim = patch * patch * c
  layers = {'patch_embed': layer(param, width, 'input', (patch_dim, width)),
            'pos_embed': layer(param, width, 'input', (num_tokens, width), fan_in=1)}
  if pool == 'cls':
    layers['cls'] = layer(param, width, 'input', (width,), fan_in=1)
  layers.update(_block_layers(param, width, depth, mlp_ratio))
  layers['readout'] = layer(param, width, 'readout', (width, num_classes))
  m_patch, m_pos, m_out = (layers[n].multiplier for n in ('patch_embed', 'pos_embed', 'readout'))
  blocks = _make_blocks(param, layers, width, depth, heads, causal=False, positions='learned')

  def apply(params, x_BxHxWxC, gamma0=1.0, with_activations=False):
    if tuple(x_BxHxWxC.shape[1:]) != (h, w, c):
      raise ValueError(f'vit built for images {(h, w, c)}, got input of shape {x_BxHxWxC.shape}')
    B = x_BxHxWxC.shape[0]
    x = x_BxHxWxC.reshape(B, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    x_BxPxN = m_patch * (x.reshape(B, num_patches, patch_dim) @ params['patch_embed'])
    if pool == 'cls':
      cls_Bx1xN = jnp.broadcast_to(layers['cls'].multiplier * params['cls'], (B, 1, width))
      x_BxPxN = jnp.concatenate([cls_Bx1xN, x_BxPxN], axis=1)
    x_BxPxN = x_BxPxN + m_pos * params['pos_embed'][None]
    acts = {'embed': x_BxPxN}
    x_BxPxN, block_acts = blocks(params, x_BxPxN, with_activations)
    acts.update(block_acts)
    x_BxPxN = layer_norm(x_BxPxN, -1)
    pooled_BxN = x_BxPxN[:, 0] if pool == 'cls' else x_BxPxN.mean(axis=1)
    out = m_out * (pooled_BxN @ params['readout']) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, depth, param,
               per_example=True)


def gpt2(vocab_size: int, seq_len: int, width: int, depth: int, param: pz.Parameterization, dtype=jnp.float32, *,
         heads: int = 4, mlp_ratio: int = 4, positions: str = 'learned', tied: bool = False) -> Model:
  """Decoder-only LM on int tokens x_BxT (T <= seq_len): token lookup (+ learned positions, or rotary q/k),
  `depth` pre-LN causal blocks, final LN, logits (B, T, V) divided by γ0. Untied readout unless tied=True (then the
  embedding matrix serves as readout with the readout's forward multiplier; see the module docstring).
  Activations: `embed`, the residual stream after each block `block00`…, `readout`."""
  if positions not in POSITIONS:
    raise ValueError(f'unknown positions {positions!r}; allowed: {", ".join(POSITIONS)}')
  if depth < 1:
    raise ValueError(f'gpt2 needs at least one block, got depth {depth}')
  if seq_len < 1 or vocab_size < 1:
    raise ValueError(f'seq_len and vocab_size must be positive, got {seq_len} and {vocab_size}')
  layers = {'embed': layer(param, width, 'input', (vocab_size, width), fan_in=1)}
  if positions == 'learned':
    layers['pos_embed'] = layer(param, width, 'input', (seq_len, width), fan_in=1)
  layers.update(_block_layers(param, width, depth, mlp_ratio))
  if not tied:
    layers['readout'] = layer(param, width, 'readout', (width, vocab_size))
  m_out = pz.forward_multiplier(param, 'readout', width, width)   # also the tied readout's: fan-in N
  blocks = _make_blocks(param, layers, width, depth, heads, causal=True, positions=positions)

  def apply(params, x_BxT, gamma0=1.0, with_activations=False):
    if x_BxT.ndim != 2 or not jnp.issubdtype(x_BxT.dtype, jnp.integer):
      raise ValueError(f'gpt2 takes int tokens of shape (B, T), got {x_BxT.dtype} {x_BxT.shape}')
    T = x_BxT.shape[1]
    if not 1 <= T <= seq_len:
      raise ValueError(f'sequence length {T} is outside 1..{seq_len} (seq_len the model was built for)')
    x_BxTxN = layers['embed'].multiplier * params['embed'][x_BxT]
    if positions == 'learned':
      x_BxTxN = x_BxTxN + layers['pos_embed'].multiplier * params['pos_embed'][None, :T]
    acts = {'embed': x_BxTxN}
    x_BxTxN, block_acts = blocks(params, x_BxTxN, with_activations)
    acts.update(block_acts)
    x_BxTxN = layer_norm(x_BxTxN, -1)
    w_out_NxV = params['embed'].T if tied else params['readout']
    out = m_out * (x_BxTxN @ w_out_NxV) / gamma0
    acts['readout'] = out
    return (out, acts) if with_activations else out

  return Model(lambda key: init_layers(key, layers, param, dtype), apply, layers, width, depth, param,
               per_example=True)
