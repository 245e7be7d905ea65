"""An immersive feed: one item per slot, and a session whose length depends on what each slot showed.

STCRank's setting (`SYSTEMS.md`). The retrievers and the cascade rank a list for
a page; a feed instead fills slot after slot, and each slot decides three things
at once: whether the user orders what it shows, how long they watch it, and
whether they swipe on to the next slot at all. Ranking each slot by its own
conversion alone walks into *greedy traps*: the items most likely to be bought
now can be the ones that end the session.

* `truth`   — the hidden slot model on top of a generated world (what the user
              does in a slot), and exact replay of a slot order;
* `predict` — a multi-objective slot model learned from logged feed sessions
              (order, view, swipe-on, and how they pull on each other);
* `stcrank` — the slot policies: greedy per slot, in-slot collaboration of the
              objectives (MOC) and the two-stage look-ahead across slots (MSC).

`benchmarks/feed.py` replays sessions in the world and compares the policies;
`docs/feed.md` explains the model and the results.
"""
