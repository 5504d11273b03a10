"""Clustered yes/no review (004, chapter 3): one question per group of similar proposals.

Proposals of one class are clustered by their embeddings with hierarchical clustering
(Ward linkage, ``fastcluster``: a tiny C++ library needing only numpy, where scipy would
add 70 MB to the field bundle). The tree is cut into clusters of at most ``target_size``
proposals; from each a few *representatives* are asked (yes: the mask is good as it is;
no: it is not). When the representatives agree (the majority share at least
``agreement``), the answer goes to the whole cluster; when they disagree, the cluster is
split into its two sub-trees and each is asked again, down to single proposals, as 004
splits "until each individual cluster reaches agreement".

This module only decides *what* to ask and *what follows* from the answers; the desktop
and the headless helpers turn the outcomes into ordinary accept / reject actions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np

if TYPE_CHECKING:
    from annotation.store import ProjectStore

DEFAULT_TARGET_SIZE = 12  # proposals per cluster before splitting: one screen of thumbnails
DEFAULT_REPRESENTATIVES = 3  # questions per cluster (an odd number: a majority always exists)
DEFAULT_AGREEMENT = 0.8  # with 3 representatives: all three must agree
# the log detail ``review`` of every decision this review makes (the editor's window,
# ``specula review-clusters``, the yes/no benchmark): a "no" here says the mask is not good
# enough, not that its pixels are background, so training does not take it as a negative
QUALITY_REVIEW = "clusters"


@dataclass
class Cluster:
    """A group of proposals asked about together: a sub-tree of one class's dendrogram."""

    id: int
    class_name: str
    members: list[int]  # instance ids, most central first
    representatives: list[int]  # the members asked about, a subset of ``members``
    node: int  # the sub-tree's node in its class tree (leaves are 0..n-1)
    parent: Optional[int] = None  # the cluster this one was split from


@dataclass
class Outcome:
    """What follows from an answer: decisions to make, and whether the cluster split."""

    accept: list[int] = field(default_factory=list)
    reject: list[int] = field(default_factory=list)
    split: list[Cluster] = field(default_factory=list)  # the sub-clusters now asked instead
    finished: Optional[Cluster] = None  # the cluster all of whose members are now decided


class ClassTree:
    """One class's dendrogram over its proposals (``fastcluster`` linkage matrix)."""

    def __init__(self, ids: Sequence[int], vectors: np.ndarray):
        self.ids = [int(i) for i in ids]
        self.vectors = vectors
        n = len(self.ids)
        self.children: dict[int, tuple[int, int]] = {}
        self.leaves_of: dict[int, list[int]] = {i: [i] for i in range(n)}
        self.height: dict[int, float] = {i: 0.0 for i in range(n)}
        if n > 1:
            import fastcluster

            # Ward on standardised vectors: compact, similar-sized groups, in O(n d) memory
            linkage = fastcluster.linkage_vector(vectors.astype(np.float64), method="ward")
            for k, (a, b, dist, _size) in enumerate(linkage):
                node, a, b = n + k, int(a), int(b)
                self.children[node] = (a, b)
                self.leaves_of[node] = self.leaves_of[a] + self.leaves_of[b]
                self.height[node] = float(dist)
        self.root = 2 * n - 2 if n > 1 else 0

    def cut(self, target_size: int) -> list[int]:
        """Nodes of at most ``target_size`` leaves: of the nodes larger than that, the
        highest merge is split first, until none is left.

        Cutting into ``n / target_size`` nodes instead (the highest merges of all) left one
        node of 30 proposals beside four small ones on 59 glass proposals; its three
        representatives, all bad masks, rejected 24 good ones with it (clusters collected 4
        masks where one question per proposal collected 29)."""
        if not self.ids:
            return []
        limit = max(1, int(target_size))
        nodes = [self.root]
        while True:
            big = [n for n in nodes if n in self.children and len(self.leaves_of[n]) > limit]
            if not big:
                break
            top = max(big, key=lambda n: self.height[n])
            nodes.remove(top)
            nodes.extend(self.children[top])
        return sorted(nodes, key=lambda n: min(self.leaves_of[n]))

    def ordered_members(self, node: int) -> list[int]:
        """The node's leaf indices, the one nearest its centroid first, then the farthest
        from all chosen so far (farthest-point order: the first few span the cluster, so
        its representatives show its spread, and disagreement is found early)."""
        leaves = self.leaves_of[node]
        if len(leaves) <= 2:
            return list(leaves)
        v = self.vectors[leaves]
        centre = v.mean(0)
        first = int(np.argmin(((v - centre) ** 2).sum(1)))
        order = [first]
        nearest = ((v - v[first]) ** 2).sum(1)
        for _ in range(len(leaves) - 1):
            nearest[order] = -1.0
            nxt = int(np.argmax(nearest))
            order.append(nxt)
            nearest = np.minimum(nearest, ((v - v[nxt]) ** 2).sum(1))
        return [leaves[i] for i in order]


def standardise(vectors: np.ndarray) -> np.ndarray:
    """Each dimension to zero mean and unit spread across the proposals (constant
    dimensions to zero), so no statistic dominates the distance by its units."""
    v = np.asarray(vectors, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    std = v.std(0)
    return np.divide(v - v.mean(0), std, out=np.zeros_like(v), where=std > 1e-9)


class ClusterReview:
    """The questions of one review: clusters per class, answered and split as 004 does.

    ``items``: (instance id, class name, embedding). Proposals without an embedding can
    be given a vector of their own statistics by the caller; every vector of a class must
    have one length. ``answer`` records a yes / no on a representative; ``decide`` answers
    a whole cluster at once (Shift+Y / Shift+N).
    """

    def __init__(self, items: Iterable[tuple[int, str, np.ndarray]], *, target_size: int = DEFAULT_TARGET_SIZE,
                 representatives: int = DEFAULT_REPRESENTATIVES, agreement: float = DEFAULT_AGREEMENT):
        if representatives < 1:
            raise ValueError("representatives must be at least 1")
        if not 0.5 <= agreement <= 1.0:
            raise ValueError("agreement must be between 0.5 and 1")
        self.n_representatives = int(representatives)
        self.agreement = float(agreement)
        by_class: dict[str, list[tuple[int, np.ndarray]]] = {}
        for iid, cls, vec in items:
            by_class.setdefault(cls, []).append((int(iid), np.asarray(vec, dtype=np.float32).ravel()))
        self.trees: dict[str, ClassTree] = {}
        self.clusters: dict[int, Cluster] = {}
        self.queue: list[int] = []  # cluster ids still to ask, in order
        self.answers: dict[int, bool] = {}  # instance id -> the expert's yes / no
        self.decided: dict[int, bool] = {}  # instance id -> accepted (True) / rejected
        self.questions = 0  # answers given (a Shift+Y/N on a cluster counts one)
        for cls in sorted(by_class):
            ids = [i for i, _ in by_class[cls]]
            lengths = {v.size for _, v in by_class[cls]}
            if len(lengths) != 1:
                raise ValueError(f"class {cls!r}: embeddings of different lengths {sorted(lengths)}")
            tree = ClassTree(ids, standardise(np.stack([v for _, v in by_class[cls]])))
            self.trees[cls] = tree
            for node in tree.cut(target_size):
                self.queue.append(self._new_cluster(cls, node, None).id)

    def _new_cluster(self, cls: str, node: int, parent: Optional[int]) -> Cluster:
        tree = self.trees[cls]
        members = [tree.ids[i] for i in tree.ordered_members(node)]
        # representatives already answered (from the parent) are asked first: no question twice
        known = [m for m in members if m in self.answers]
        fresh = [m for m in members if m not in self.answers]
        reps = (known + fresh)[: max(self.n_representatives, len(known))]
        cluster = Cluster(len(self.clusters), cls, members, reps, node, parent)
        self.clusters[cluster.id] = cluster
        return cluster

    # ------------------------------------------------------------ reading
    def current(self) -> Optional[Cluster]:
        """The cluster to ask about next (``None``: everything is decided)."""
        while self.queue:
            c = self.clusters[self.queue[0]]
            if any(m not in self.decided for m in c.members):
                return c
            self.queue.pop(0)
        return None

    def pending(self, cluster: Cluster) -> list[int]:
        """Representatives of ``cluster`` still waiting for an answer."""
        return [r for r in cluster.representatives if r not in self.answers and r not in self.decided]

    def undecided(self, cluster: Cluster) -> list[int]:
        return [m for m in cluster.members if m not in self.decided]

    @property
    def remaining(self) -> int:
        return sum(len(self.undecided(self.clusters[c])) for c in dict.fromkeys(self.queue))

    # ------------------------------------------------------------ answering
    def answer(self, instance_id: int, yes: bool) -> Outcome:
        """The expert's yes / no on one proposal of the current cluster.

        The proposal itself is decided at once. When the cluster's representatives are
        all answered, their majority decides the rest if it reaches ``agreement``;
        otherwise the cluster splits into its two sub-trees, which are asked next.
        """
        cluster = self.current()
        if cluster is None or instance_id not in cluster.members:
            raise KeyError(f"proposal {instance_id} is not in the cluster under review")
        if instance_id in self.decided:
            raise ValueError(f"proposal {instance_id} is already decided")
        self.questions += 1
        self.answers[instance_id] = bool(yes)
        out = Outcome()
        self._decide([instance_id], bool(yes), out)
        if instance_id not in cluster.representatives:
            # answered outside the questions: it counts as one more representative
            cluster.representatives.append(instance_id)
        self._settle(cluster, out)
        self._finish_if_done(cluster, out)
        return out

    def _settle(self, cluster: Cluster, out: Outcome) -> None:
        """With every representative answered: decide the rest, or split and settle the parts."""
        if self.pending(cluster) or not self.undecided(cluster):
            return
        votes = [self.answers[r] for r in cluster.representatives if r in self.answers]
        if not votes:
            return
        yes_share = sum(votes) / len(votes)
        tree = self.trees[cluster.class_name]
        if max(yes_share, 1 - yes_share) >= self.agreement or cluster.node not in tree.children:
            self._decide(self.undecided(cluster), yes_share >= 0.5, out)
            return
        if cluster.id in self.queue:
            self.queue.remove(cluster.id)
        subs = [self._new_cluster(cluster.class_name, child, cluster.id) for child in tree.children[cluster.node]]
        subs = [s for s in subs if self.undecided(s)]
        self.queue[0:0] = [s.id for s in subs]
        out.split.extend(subs)
        for sub in subs:  # a part whose representatives were all answered above settles now
            self._settle(sub, out)

    def decide(self, cluster_id: int, yes: bool) -> Outcome:
        """Shift+Y / Shift+N: every undecided member of the cluster gets this answer."""
        cluster = self.clusters[cluster_id]
        self.questions += 1
        out = Outcome()
        self._decide(self.undecided(cluster), bool(yes), out)
        self._finish_if_done(cluster, out)
        return out

    def sync(self, decided: dict[int, bool]) -> None:
        """Take the decisions as the project holds them now (after an undo or redo, or a
        decision made elsewhere): ``decided`` maps instance id -> accepted / rejected for
        every proposal of this review that is no longer waiting."""
        known = {m for c in self.clusters.values() for m in c.members}
        self.decided = {int(i): bool(y) for i, y in decided.items() if int(i) in known}
        self.answers = {i: y for i, y in self.answers.items() if i in self.decided}
        for cid, c in self.clusters.items():
            if cid not in self.queue and self.undecided(c) and not self._was_split(cid):
                self.queue.insert(0, cid)

    def _was_split(self, cid: int) -> bool:
        """Whether the cluster was split (its parts are asked instead of it)."""
        return any(c.parent == cid for c in self.clusters.values())

    def _decide(self, ids: Iterable[int], yes: bool, out: Outcome) -> None:
        for iid in ids:
            if iid in self.decided:
                continue
            self.decided[iid] = yes
            (out.accept if yes else out.reject).append(iid)

    def _finish_if_done(self, cluster: Cluster, out: Outcome) -> None:
        if not self.undecided(cluster):
            out.finished = cluster
            if cluster.id in self.queue:
                self.queue.remove(cluster.id)


def review_items(store: "ProjectStore", class_name: Optional[str] = None) -> list[tuple[int, str, np.ndarray]]:
    """The project's waiting proposals as (id, class, vector) for ``ClusterReview``.

    A proposal whose embedding is missing or of another length than its class's usual one
    (made by another model, or by a run before embeddings existed) gets its class's mean
    vector with its own leading values (score first) written over it, so one odd proposal
    neither stops the review nor drags its class apart.
    """
    rows = store.proposal_rows(class_name)
    vectors = store.embeddings([r[0] for r in rows])
    by_class: dict[str, list[tuple[int, float]]] = {}
    for iid, _image_id, cls, score in rows:
        by_class.setdefault(cls, []).append((iid, score))
    items: list[tuple[int, str, np.ndarray]] = []
    for cls, members in sorted(by_class.items()):
        lengths = [vectors[i].size for i, _ in members if i in vectors]
        length = max(set(lengths), key=lengths.count) if lengths else 1
        usual = [vectors[i] for i, _ in members if i in vectors and vectors[i].size == length]
        mean = np.mean(usual, 0) if usual else np.zeros(length, np.float32)
        for iid, score in members:
            vec = vectors.get(iid)
            if vec is None or vec.size != length:
                own = vec if vec is not None else np.array([score], np.float32)
                vec = mean.copy()
                k = min(own.size, length)
                vec[:k] = own[:k]
            items.append((iid, cls, vec))
    return items
