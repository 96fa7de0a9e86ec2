"""CPU stand-in for apex.optimizers.FusedAdam (apex is CUDA-only): torch's own Adam with the same
hyper-parameters (no weight decay, not AdamW), which is what a CPU runs."""
import torch


class FusedAdam(torch.optim.Adam):
    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, **_ignored):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
