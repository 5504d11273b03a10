"""``specula review-clusters PROJECT``: the project's proposals in clusters, decided a cluster at a time.

Without options it lists the clusters of the proposals waiting for review (clustered
per class by their stored embeddings, ``annotation.clusters``): id, class, size and the
representatives to look at (instance id, image, score). ``--accept 3,7`` / ``--reject
5`` then decide whole clusters as ordinary decisions: the states set and one ``accept``
/ ``reject`` row per instance in the interaction log, all in one transaction, so a
failure half-way leaves the project as it was.

The clustering depends only on the proposals (all classes clustered, in id order, then
filtered by ``--class``), so the ids listed are the ids a following ``--accept`` means,
as long as nobody changes the proposals in between.

Unlike the editor's per-image review, deciding the last proposal of an image here does
not mark the image done: a yes/no answer says nothing of the pixels no proposal covered,
so training keeps treating them as unknown (partial labels), not as background.
"""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from specula.cli import EXIT_OK, CommandError, printable


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review-clusters", help="list the proposals in clusters; accept or reject whole clusters",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("project", help="project folder (holds specula.db)")
    p.add_argument("--class", dest="class_name", default=None, help="only the clusters of this class")
    p.add_argument("--json", action="store_true", help="one JSON object instead of the text listing")
    p.add_argument("--accept", default=None, metavar="ID[,ID]", help="accept every proposal of these clusters")
    p.add_argument("--reject", default=None, metavar="ID[,ID]", help="reject every proposal of these clusters")
    p.add_argument("--target-size", type=int, default=None, help="the most proposals in one cluster (default 12)")
    p.add_argument("--representatives", type=int, default=None, help="members shown per cluster (default 3)")
    p.set_defaults(handler=cmd_review_clusters)


def _ids(text: str | None, option: str) -> list[int]:
    if not text:
        return []
    try:
        return [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise CommandError(f"{option} takes cluster ids separated by commas, e.g. {option} 3,7") from None


def project_review(store, target_size: int | None = None, representatives: int | None = None):
    """The ``ClusterReview`` of the project's proposals and the proposals by id."""
    from annotation.clusters import (
        DEFAULT_REPRESENTATIVES,
        DEFAULT_TARGET_SIZE,
        ClusterReview,
    )
    from annotation.document import InstanceState
    from annotation.effort.yes_no import Candidate, cluster_items

    proposals = {p.id: p for p in store.instances(states=[InstanceState.PROPOSED]) if p.id is not None}
    vectors = store.embeddings(list(proposals))
    items = cluster_items([Candidate(i, "", p.class_name, p.mask, float(p.score or 0.0), vectors.get(i))
                           for i, p in proposals.items()])
    review = ClusterReview(items, target_size=target_size or DEFAULT_TARGET_SIZE,
                           representatives=representatives or DEFAULT_REPRESENTATIVES)
    return review, proposals


def decide_instances(store, decisions: Sequence[tuple[Sequence[int], str, dict]]) -> int:
    """Accept or reject instances as the review does: ``decisions`` is [(ids, "accept" |
    "reject", details)]; states and one log row per instance, all in ONE transaction.
    Returns the number of instances decided."""
    from annotation.document import InstanceState

    now = time.time()
    n = 0
    with store.transaction():
        for ids, action, details in decisions:
            ids = [int(i) for i in ids]
            if not ids:
                continue
            state = InstanceState.ACCEPTED if action == "accept" else InstanceState.REJECTED
            store.set_states(ids, state)
            for inst in (store.instance(i) for i in ids):
                store.log(action, image_id=inst.image_id, instance_id=inst.id, class_name=inst.class_name,
                          started=now, origin=inst.origin, **details)
            n += len(ids)
    return n


def cmd_review_clusters(args: argparse.Namespace) -> int:
    from annotation.store import ProjectStore, StoreError

    for flag, value in (("--target-size", args.target_size), ("--representatives", args.representatives)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} {value}: give a number of proposals, 1 or more")
    accept, reject = _ids(args.accept, "--accept"), _ids(args.reject, "--reject")
    both = set(accept) & set(reject)
    if both:
        raise CommandError(f"clusters {sorted(both)} are both in --accept and --reject")
    deciding = bool(accept or reject)
    try:
        store = ProjectStore.open(args.project, create=False, scan=False,
                                  writer="specula review-clusters" if deciding else None,
                                  read_only=None if deciding else True)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    with store:
        try:
            review, proposals = project_review(store, args.target_size, args.representatives)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if deciding:
            return _decide(store, review, accept, reject, args.json)
        _print_listing(store, review, proposals, args.class_name, args.json)
    return EXIT_OK


def _decide(store, review, accept: list[int], reject: list[int], as_json: bool) -> int:
    from annotation.clusters import QUALITY_REVIEW
    from annotation.store import StoreError

    missing = [c for c in accept + reject if c not in review.clusters]
    if missing:
        raise CommandError(f"no cluster {', '.join(map(str, missing))} (list them: specula review-clusters PROJECT)")
    decisions = [(review.clusters[c].members, "accept", {"review": QUALITY_REVIEW, "cluster": c, "via": "review-clusters"})
                 for c in accept]
    decisions += [(review.clusters[c].members, "reject", {"review": QUALITY_REVIEW, "cluster": c, "via": "review-clusters"})
                  for c in reject]
    try:
        n = decide_instances(store, decisions)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    done = {"accepted": sorted(i for c in accept for i in review.clusters[c].members),
            "rejected": sorted(i for c in reject for i in review.clusters[c].members)}
    if as_json:
        print(json.dumps({"decided": n, **done}))
    else:
        print(f"accepted {len(done['accepted'])} and rejected {len(done['rejected'])} proposals "
              f"({len(accept) + len(reject)} clusters)")
    return EXIT_OK


def _print_listing(store, review, proposals: dict, class_name: str | None, as_json: bool) -> None:
    paths: dict[int, str] = {}

    def path_of(iid: int) -> str:
        image_id = proposals[iid].image_id
        if image_id not in paths:
            paths[image_id] = store.image(image_id).path
        return paths[image_id]

    clusters = [c for c in review.clusters.values() if class_name is None or c.class_name == class_name]
    rows = [{"cluster": c.id, "class": c.class_name, "size": len(c.members), "members": c.members,
             "representatives": [{"id": r, "image": path_of(r), "score": round(float(proposals[r].score or 0.0), 4)}
                                 for r in c.representatives]} for c in clusters]
    if as_json:
        print(json.dumps({"proposals": sum(r["size"] for r in rows), "clusters": rows}))
        return
    if not rows:
        print("no proposals waiting for review" + (f" of class {printable(class_name)}" if class_name else ""))
        return
    for r in rows:
        reps = ", ".join(f"#{p['id']} {printable(p['image'])} ({p['score']:.2f})" for p in r["representatives"])
        print(f"cluster {r['cluster']}: {printable(r['class'])}, {r['size']} proposals; look at {reps}")
