"""The reference optimiser: SGD with momentum and PyTorch-style coupled weight decay, step lr."""
from __future__ import annotations

from typing import Sequence

import keras


@keras.saving.register_keras_serializable(package="grasp_tf")
class CoupledSGD(keras.optimizers.SGD):
    """``torch.optim.SGD``: weight decay added to the gradient before momentum, ``b = μb + g``,
    ``θ -= lr·b``.

    Keras' own ``weight_decay`` is decoupled (AdamW style) and its velocity is scaled by the
    lr of the step that made it, so both drift from the paper's recipe (the latter at every
    lr decay). Nesterov is not supported.
    """

    def __init__(self, *args, coupled_weight_decay: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if self.nesterov:
            raise ValueError("CoupledSGD implements plain (non-Nesterov) momentum only.")
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        if self.coupled_weight_decay:
            gradient = gradient + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
        if self.momentum:
            buf = self.momentums[self._get_variable_index(variable)]
            self.assign(buf, ops.cast(self.momentum, variable.dtype) * buf + gradient)
            gradient = buf
        self.assign_sub(variable, lr * gradient)

    def get_config(self):
        return {**super().get_config(), "coupled_weight_decay": self.coupled_weight_decay}


def step_schedule(base_lr: float, steps_per_epoch: int, boundaries_epochs: Sequence[int],
                  decay: float = 0.1) -> keras.optimizers.schedules.LearningRateSchedule:
    """Piecewise-constant lr: ``base_lr`` multiplied by ``decay`` at each boundary epoch."""
    # PiecewiseConstantDecay switches *after* a boundary step; epoch e starts at step e*spe.
    bounds = [int(e) * steps_per_epoch - 1 for e in boundaries_epochs]
    values = [base_lr * decay ** i for i in range(len(bounds) + 1)]
    if not bounds:
        return keras.optimizers.schedules.PiecewiseConstantDecay([10 ** 12], values * 2)
    return keras.optimizers.schedules.PiecewiseConstantDecay(bounds, values)


def boundary_epochs(epochs: int, fractions: Sequence[float] = (), every: int = 0) -> list[int]:
    """Epochs at which lr decays: at given fractions of training, or every ``every`` epochs."""
    if every:
        return list(range(every, epochs, every))
    return sorted({int(round(f * epochs)) for f in fractions if 0 < f < 1 and int(round(f * epochs)) > 0})
