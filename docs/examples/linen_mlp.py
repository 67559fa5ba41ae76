"""A user's own Flax module, written with no knowledge of superconsistency: a linen MLP with biases.
configs/flax_example.py sweeps it over widths under μP and NTP; docs/examples/flax_transfer.py does the same from
Python and draws the transfer plot."""
from flax import linen as nn


class MLP(nn.Module):
  width: int
  hidden_layers: int = 2
  classes: int = 10

  @nn.compact
  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for _ in range(self.hidden_layers):
      x = nn.relu(nn.Dense(self.width)(x))
    return nn.Dense(self.classes)(x)
