"""attn: transformer attention on the CPU for NumPy users.

Every function takes NumPy arrays and returns NumPy arrays; the work is done
by the attn C library (float32, SIMD, threads), with the GIL released.

The article's functions, same names and argument order (note k, q, v):

    softmax_lastdim(x)
    self_attention(x, Wk, Wq, Wv)                     x (N, D)    -> (N, HS)
    self_attention_batched(x, Wk, Wq, Wv)             x (B, N, D) -> (B, N, HS)
    multihead_attention_list(x, Wqs, Wks, Wvs, Wp, do_mask=False)
    multihead_attention_vec(x, W, NH, Wp, do_mask=False)
    multihead_cross_attention_list(xq, xv, Wqs, Wks, Wvs, Wp)
    softmax_cols(x)
    self_attention_cols(x, Wk, Wq, Wv, Bk, Bq, Bv)    x (D, N)    -> (HS, N)
    layer_norm(x, gamma=None, beta=None, eps=1e-5)
    linear(x, W, b=None)                             W (in, out) or pack_weight(W)

The general API: sdpa(q, k, v, ...), its gradients sdpa_backward(q, k, v,
out, lse, dout, ...), merge(outs, lses), the class MultiHeadAttention (with
from_torch_state / to_torch_state; num_kv_heads for grouped-query
attention), and the gradients linear_backward, layer_norm_backward,
rms_norm_backward, rope_backward and mha_backward(module, dout, x). A
Llama-style layer's pieces: rope(x, positions), the rope_inv_freq* tables
(linear, NTK, Llama 3, YaRN) and rms_norm(x).

Dimension letters: B batch, H query heads, Hkv key/value heads, N tokens,
Nq query tokens, Nkv key/value tokens, D model width, d and HS head size,
dv value head size, NH number of heads.

Data types and layout (the documented conversion)
  * float32 and float64 arrays are accepted, mixed too. The computation is
    float32. The result's dtype is np.result_type of the data inputs: float64
    if any of them is float64 (so float64 code gets float64 back), else
    float32. Masks and key lengths do not affect the result dtype.
  * Arrays of any strides are read in place (transposed, sliced, negative or
    zero strides) when they are float32, aligned, in native byte order and
    their byte strides are multiples of 4. Anything else (float64 included)
    is first copied to a C-contiguous float32 array.
  * Integer, boolean, complex and float16 arrays raise TypeError. A boolean
    mask is refused: build the additive form with np.where(keep, 0, -np.inf).
  * Shape errors raise ValueError naming the argument, the axis and the
    value as you passed them, e.g. "sdpa: k.shape[3]=80 but q.shape[3]=64:
    q and k need the same head size d" or "mask has shape (4, 6): axis 1 is
    6 but must be 1 or Nkv=5"; what only the C library checks keeps its
    message ("attn_sdpa: ...").
  * Numbers are never coerced silently. Integer arguments (num_threads,
    NH / num_heads, key_lengths, q_offset, k_offset, window sides) take
    Python or NumPy integers only: 1.5, "2" and True raise TypeError. Seeds
    are integers in 0..2**64-1. A finite float64 value beyond float32's
    range (|x| > 3.4e38), in an array or a scalar such as scale, raises
    ValueError instead of becoming inf; inf and nan are passed on as given.
    Strings are not numbers. The CLI follows the same rule.
  * causal: "none", "top_left" or "bottom_right" (also "top-left",
    "bottom-right"); True is accepted where both rules agree (Nq == Nkv and
    no key_lengths) and is an error elsewhere; the CLI's bare --causal too.
  * num_threads=None (the default) uses every online CPU, whatever OpenMP's
    global setting (importing torch lowers that one).
"""

# One module per concern; a new one is a module and one import line here.
from ._convert import _attn
from .info import build_info, dropout_keep, get_isa, set_isa
from .article import (multihead_attention_list, multihead_attention_vec,
                      multihead_cross_attention_list, self_attention, self_attention_batched,
                      self_attention_cols, softmax_cols, softmax_lastdim)
from .core import alibi_slopes, merge, sdpa
from .backward import sdpa_backward
from .grads import (layer_norm_backward, linear_backward, mha_backward, rms_norm_backward,
                    rope_backward)
from .modules import MultiHeadAttention, PackedWeight, layer_norm, linear, pack_weight
from .decoder import (rms_norm, rope, rope_inv_freq, rope_inv_freq_linear, rope_inv_freq_llama3,
                      rope_inv_freq_ntk, rope_inv_freq_yarn)
from .kv import KVCache

__all__ = [
    "softmax_lastdim",
    "self_attention",
    "self_attention_batched",
    "multihead_attention_list",
    "multihead_attention_vec",
    "multihead_cross_attention_list",
    "softmax_cols",
    "self_attention_cols",
    "layer_norm",
    "linear",
    "pack_weight",
    "PackedWeight",
    "sdpa",
    "merge",
    "sdpa_backward",
    "linear_backward",
    "layer_norm_backward",
    "rms_norm_backward",
    "mha_backward",
    "rope_backward",
    "alibi_slopes",
    "MultiHeadAttention",
    "rope",
    "rope_inv_freq",
    "rope_inv_freq_linear",
    "rope_inv_freq_ntk",
    "rope_inv_freq_llama3",
    "rope_inv_freq_yarn",
    "rms_norm",
    "KVCache",
    "dropout_keep",
    "build_info",
    "get_isa",
    "set_isa",
]

__version__ = _attn.version()


def __getattr__(name):
    # attn.torch (the PyTorch drop-ins) is imported on first use, never by
    # `import attn`: importing torch takes seconds and torch is optional.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError("module 'attn' has no attribute %r" % (name,))
