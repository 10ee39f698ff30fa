"""The building blocks of the served ONNX graphs, shared by the estimator families and the export.

Callers: each family's ``to_onnx`` (training/families/), which writes its estimator's nodes into a
:class:`Graph`, and training/portable.py, which converts the steps before the estimator (a
:func:`scaler`), calls the family and wraps the nodes into a model. A family reproduces
scikit-learn's arithmetic with these, not just its intent (training/portable.py says how the
built-in ones do it): the proof compares them to 1e-6.

Tensor names are ``t1``, ``t2``, ... in the order they are asked for, so the same model gives the
same bytes; the graph's input is :data:`INPUT` (float64 rows in feature order) and a family's
last node writes :data:`OUTPUT` (float64 probabilities in ``classes_`` order), a regressor's
:data:`PREDICTION` (float64, one column: the predicted value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import helper, numpy_helper
from sklearn.preprocessing import StandardScaler

from modelcard.runtime import INPUT, OUTPUT, PREDICTION

__all__ = [
    "INPUT",
    "OUTPUT",
    "PREDICTION",
    "ConversionError",
    "Ensemble",
    "Graph",
    "Tree",
    "probabilities",
    "scaler",
    "two_columns",
]

#: ``ai.onnx.ml.TreeEnsemble``'s ``nodes_modes`` value for ``x <= threshold``.
BRANCH_LEQ = 0


class ConversionError(Exception):
    """The model cannot be written as an ONNX graph, or the graph does not answer as it does."""


class Graph:
    """The nodes and initialisers of one graph being written, and its fresh tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.count = 0

    def name(self) -> str:
        """A fresh tensor name: t1, t2, ... (the output is always OUTPUT)."""
        self.count += 1
        return f"t{self.count}"

    def constant(self, value: Any) -> str:
        """A float64 initialiser holding ``value``; its name."""
        name = self.name()
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), name))
        return name


def scaler(step: StandardScaler, current: str, g: Graph) -> str:
    """``(x - mean_) / scale_``, each only where the scaler uses it (as its transform does)."""
    if step.with_mean and step.mean_ is not None:
        out = g.name()
        g.nodes.append(helper.make_node("Sub", [current, g.constant(step.mean_)], [out]))
        current = out
    if step.with_std and step.scale_ is not None:
        out = g.name()
        g.nodes.append(helper.make_node("Div", [current, g.constant(step.scale_)], [out]))
        current = out
    return current


def two_columns(positive: str, g: Graph) -> None:
    """``[1 - p, p]`` into OUTPUT from the positive class's probability, as scikit-learn stacks
    them."""
    negative = g.name()
    g.nodes.append(helper.make_node("Sub", [g.constant([1.0]), positive], [negative]))
    g.nodes.append(helper.make_node("Concat", [negative, positive], [OUTPUT], axis=1))


def probabilities(raw: str, columns: int, g: Graph) -> None:
    """The class probabilities into OUTPUT from the raw decision scores RAW (COLUMNS wide), as
    scikit-learn's linear and boosting classifiers link them: one column is the positive class's
    score (sigmoid, then ``[1 - p, p]``), more are one score a class (softmax)."""
    if columns == 1:
        positive = g.name()
        g.nodes.append(helper.make_node("Sigmoid", [raw], [positive]))
        two_columns(positive, g)
    else:
        g.nodes.append(helper.make_node("Softmax", [raw], [OUTPUT], axis=1))


@dataclass
class Tree:
    """One tree in the arrays both scikit-learn tree formats reduce to; node 0 is the root."""

    left: npt.NDArray[np.int64]
    right: npt.NDArray[np.int64]
    feature: npt.NDArray[np.int64]
    threshold: npt.NDArray[np.float64]
    missing_left: npt.NDArray[np.bool_]
    is_leaf: npt.NDArray[np.bool_]
    leaf_value: npt.NDArray[np.float64]
    target: int


class Ensemble:
    """The attributes of one ``ai.onnx.ml.TreeEnsemble`` node, tree by tree.

    Each leaf adds one weight to one target, so a forest of C-class trees becomes C trees per
    tree, one per class. Internal nodes are numbered in the ``nodes_*`` lists, leaves in the
    ``leaf_*`` lists; a branch names either, flagged by ``nodes_*leafs``. Thresholds are float64
    and a row goes left when ``x <= threshold``.
    """

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.feature: list[int] = []
        self.split: list[float] = []
        self.missing_true: list[int] = []
        self.true_id: list[int] = []
        self.true_leaf: list[int] = []
        self.false_id: list[int] = []
        self.false_leaf: list[int] = []
        self.leaf_target: list[int] = []
        self.leaf_weight: list[float] = []

    def add(self, tree: Tree) -> None:
        count = len(tree.left)
        internal = [i for i in range(count) if not tree.is_leaf[i]]
        leaves = [i for i in range(count) if tree.is_leaf[i]]
        node_at = {node: len(self.feature) + k for k, node in enumerate(internal)}
        leaf_at = {node: len(self.leaf_target) + k for k, node in enumerate(leaves)}
        for node in leaves:
            self.leaf_target.append(tree.target)
            self.leaf_weight.append(float(tree.leaf_value[node]))
        if not internal:  # a tree that is one leaf: a node whose branches both name it
            self.roots.append(len(self.feature))
            self._node(0, 0.0, False, (leaf_at[0], 1), (leaf_at[0], 1))
            return
        self.roots.append(node_at[0])
        for node in internal:
            branches = []
            for child in (int(tree.left[node]), int(tree.right[node])):
                branches.append((leaf_at[child], 1) if tree.is_leaf[child] else (node_at[child], 0))
            self._node(
                int(tree.feature[node]),
                float(tree.threshold[node]),
                bool(tree.missing_left[node]),
                branches[0],
                branches[1],
            )

    def _node(
        self,
        feature: int,
        split: float,
        missing_true: bool,
        true: tuple[int, int],
        false: tuple[int, int],
    ) -> None:
        self.feature.append(feature)
        self.split.append(split)
        self.missing_true.append(int(missing_true))
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])

    def node(self, current: str, out: str, n_targets: int) -> onnx.NodeProto:
        """The TreeEnsemble node summing every leaf reached into ``n_targets`` columns."""
        return helper.make_node(
            "TreeEnsemble",
            [current],
            [out],
            domain="ai.onnx.ml",
            aggregate_function=1,  # SUM
            post_transform=0,  # NONE
            n_targets=n_targets,
            tree_roots=self.roots,
            nodes_featureids=self.feature,
            nodes_modes=numpy_helper.from_array(
                np.full(len(self.feature), BRANCH_LEQ, dtype=np.uint8)
            ),
            nodes_splits=numpy_helper.from_array(np.asarray(self.split, dtype=np.float64)),
            nodes_missing_value_tracks_true=self.missing_true,
            nodes_truenodeids=self.true_id,
            nodes_trueleafs=self.true_leaf,
            nodes_falsenodeids=self.false_id,
            nodes_falseleafs=self.false_leaf,
            leaf_targetids=self.leaf_target,
            leaf_weights=numpy_helper.from_array(np.asarray(self.leaf_weight, dtype=np.float64)),
        )
