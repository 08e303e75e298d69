"""A graph neural network accuracy predictor on torch-geometric, for the DAG of any space.

Input: the compact graph of `predictors.encodings` (chains merged, `Zero` layers and dead layers removed,
stacked identical cells kept once with a repeat count), so an NB201 network is ~30 nodes instead of ~300.
Node features: an embedding of the node's op label (the vocabulary is learned in `fit`; labels unseen
then share one "unknown" slot) plus a linear map of its numeric features (log parameters, log
multiply-adds, log channels, log spatial size, repeat count), standardized on the training graphs.
`numeric_features=False` keeps the labels and the graph only: on NB201 CIFAR-10 that ranks random held-out
cells worse, because size correlates with accuracy over the whole space (measured:
`benchmarks/predictors.md`), though it may rank the best cells better, where size misleads (a skip
connection beats a convolution there); BANANAS offers it as an option (`strategies/bananas.py`, whose
default keeps the features).

Model: a graph network over the DAG in the spirit of BRP-NAS's GCN predictor (Dudziak et al. 2020); each
layer sums a GIN convolution (Xu et al. 2019) over the forward edges and one over the reversed edges, so
information flows both ways along the DAG, followed by layer norm, ReLU and a residual connection; the
readout concatenates the mean over nodes with the output node's embedding. Deviations from BRP-NAS: GIN
aggregation instead of a GCN's normalised adjacency product, and our own readout.

Loss: mean squared error on standardized targets plus `rank_weight` x a pairwise logistic ranking loss
over all pairs of the minibatch (as in ranking-based predictors, e.g. ReNAS, Xu et al. 2021), which
rewards the order that search and Kendall tau care about. Training: Adam (lr 2e-3, weight decay 1e-4)
with cosine decay for `steps` minibatches of 128 graphs; by default 4 x the training-set size, between
500 and 4000: on NB201 CIFAR-10 this ranks held-out cells better than the earlier 2 x n steps of 64;
the variants tried and not kept (larger batches, width, depth, readouts, ranking weight, dropout, target
transforms, blending in a random forest) are listed with their figures in `benchmarks/predictors.md`.
With `ensemble` > 1, members differ by seed and `predict` averages them (`predict_members` gives each
one's output); an ensemble of 5 ranks better than one member, at five times the cost (measured:
`benchmarks/predictors.md`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from nas.registry import register_predictor
from nas.space import Architecture, SearchSpace
from predictors.base import Predictor, Standardizer, single_thread
from predictors.encodings import NUM_FEATS, CompactGraph, compact_graph


class DirectedGIN(nn.Module):
    """GIN layers over forward and reversed edges; readout = [mean of nodes, output node]."""

    def __init__(self, vocab: int, hidden: int = 64, layers: int = 3, dropout: float = 0.0,
                 numeric_features: bool = True) -> None:
        from torch_geometric.nn import GINConv

        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.numeric = nn.Linear(NUM_FEATS, hidden) if numeric_features else None

        def mlp() -> nn.Module:
            return nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))

        self.forward_convs = nn.ModuleList(GINConv(mlp(), train_eps=True) for _ in range(layers))
        self.backward_convs = nn.ModuleList(GINConv(mlp(), train_eps=True) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def forward(self, batch) -> torch.Tensor:
        from torch_geometric.nn import global_mean_pool

        h = self.embed(batch.label)
        if self.numeric is not None:
            h = h + self.numeric(batch.feats)
        reverse = batch.edge_index.flip(0)
        for fwd, bwd, norm in zip(self.forward_convs, self.backward_convs, self.norms):
            h = h + torch.relu(norm(fwd(h, batch.edge_index) + bwd(h, reverse)))
        out_nodes = batch.ptr[:-1] + batch.out
        pooled = torch.cat([global_mean_pool(h, batch.batch), h[out_nodes]], dim=1)
        return self.head(pooled).squeeze(-1)


def pairwise_logistic(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of log(1 + exp(-(p_i - p_j))) over the pairs with target_i > target_j."""
    better = (target[:, None] - target[None, :]) > 0
    if not better.any():
        return pred.sum() * 0.0
    diff = pred[:, None] - pred[None, :]
    return nn.functional.softplus(-diff[better]).mean()


@register_predictor("gnn")
class GNNPredictor(Predictor):
    """Directed-GIN graph neural network on the compact architecture DAG, MSE + pairwise ranking loss."""

    name = "gnn"
    own_ensemble = True

    def __init__(self, hidden: int = 64, layers: int = 3, steps: int | None = None, batch_size: int = 128,
                 lr: float = 2e-3, weight_decay: float = 1e-4, rank_weight: float = 1.0, dropout: float = 0.0,
                 ensemble: int = 1, numeric_features: bool = True, seed: int = 0) -> None:
        self.hidden, self.layers, self.steps, self.batch_size = hidden, layers, steps, batch_size
        self.numeric_features = numeric_features
        self.lr, self.weight_decay, self.rank_weight, self.dropout = lr, weight_decay, rank_weight, dropout
        self.ensemble, self.seed = ensemble, seed
        self.vocab: dict[str, int] = {}
        self.feat_mean = np.zeros(NUM_FEATS, dtype=np.float32)
        self.feat_std = np.ones(NUM_FEATS, dtype=np.float32)
        self.models: list[DirectedGIN] = []
        self.scale: Standardizer | None = None

    # -- graphs ----------------------------------------------------------------------------------------------
    def _data(self, cg: CompactGraph):
        from torch_geometric.data import Data

        edges = np.asarray(cg.edges, dtype=np.int64).reshape(-1, 2).T
        return Data(label=torch.tensor([self.vocab.get(lab, 0) for lab in cg.labels], dtype=torch.long),
                    feats=torch.from_numpy((cg.feats - self.feat_mean) / self.feat_std),
                    edge_index=torch.from_numpy(edges), out=torch.tensor([cg.output]), num_nodes=len(cg))

    def _graphs(self, space: SearchSpace, archs: Sequence[Mapping]) -> list[CompactGraph]:
        return [compact_graph(space, Architecture(a)) for a in archs]

    # -- training --------------------------------------------------------------------------------------------
    def fit(self, space: SearchSpace, archs: Sequence[Mapping], targets: Sequence[float] | np.ndarray) -> GNNPredictor:
        graphs = self._graphs(space, archs)
        labels = sorted({lab for cg in graphs for lab in cg.labels})
        self.vocab = {lab: i + 1 for i, lab in enumerate(labels)}  # 0: unknown
        feats = np.concatenate([cg.feats for cg in graphs])
        self.feat_mean, self.feat_std = feats.mean(0), feats.std(0) + 1e-6
        data = [self._data(cg) for cg in graphs]
        self.scale = Standardizer(targets)
        y = torch.tensor(self.scale.forward(targets), dtype=torch.float32)
        with single_thread():
            self.models = [self._train_member(member, data, y) for member in range(self.ensemble)]
        return self

    def _train_member(self, member: int, data: list, y: torch.Tensor) -> DirectedGIN:
        from torch_geometric.data import Batch

        gen = torch.Generator().manual_seed(self.seed * 1009 + member)
        with torch.random.fork_rng():  # seed the initialisation without touching the global generator
            torch.manual_seed(self.seed * 1009 + member)
            model = DirectedGIN(len(self.vocab) + 1, self.hidden, self.layers, self.dropout, self.numeric_features)
        n = len(data)
        steps = self.steps or min(4000, max(500, 4 * n))
        opt = torch.optim.Adam(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        model.train()
        for _ in range(steps):
            idx = torch.randperm(n, generator=gen)[: self.batch_size].tolist()
            pred = model(Batch.from_data_list([data[i] for i in idx]))
            loss = nn.functional.mse_loss(pred, y[idx]) + self.rank_weight * pairwise_logistic(pred, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        return model

    @torch.no_grad()
    def predict_members(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        from torch_geometric.data import Batch

        if not self.models or self.scale is None:
            raise RuntimeError("fit the gnn predictor before predicting")
        data = [self._data(cg) for cg in self._graphs(space, archs)]
        out = np.zeros((len(self.models), len(data)))
        for start in range(0, len(data), 1024):
            batch = Batch.from_data_list(data[start:start + 1024])
            for m, model in enumerate(self.models):
                out[m, start:start + len(data[start:start + 1024])] = model(batch).numpy()
        return self.scale.inverse(out)

    def predict(self, space: SearchSpace, archs: Sequence[Mapping]) -> np.ndarray:
        return self.predict_members(space, archs).mean(axis=0)
