"""Self-distillation: one set of weights, a teacher that reads the query's thought, a student that does not.

OneSearch-V2's reasoning-internalised self-distillation. Each search example is
read twice by the same model: as the teacher (its query followed by a thought,
`genrec.model.thoughts`) and as the student (the raw query, what serving sees).
Both learn the target by cross-entropy — the teacher must learn to use its
thought — and the student also matches the teacher's distribution over every
SID level and over the item head's catalogue, by KL(teacher ‖ student) with the
teacher held fixed (no gradient through its side of the KL: otherwise the cheapest
way to agree is for the teacher to forget its thought). At inference only the
student's path exists: the served model reads the raw query, so the thought's
nearest-neighbour search and longer input are never paid.

    loss = self_distillation_loss(model, student_batch, teacher_batch, codes, items, weight=1.0)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genrec.model.batches import EncoderBatch
from genrec.model.model import GenerativeModel


def self_distillation_loss(model: GenerativeModel, student: EncoderBatch, teacher: EncoderBatch,
                           codes: torch.Tensor, items: torch.Tensor | None, weight: float) -> torch.Tensor:
    """Mean of the student's and the teacher's own losses, plus `weight` × KL(teacher ‖ student)
    averaged over the SID levels (and the item head's catalogue when the model has one)."""
    if student.batch_size != teacher.batch_size:
        raise ValueError(f"the teacher batch has {teacher.batch_size} requests, the student's {student.batch_size}: "
                         "they must be the same requests, read two ways")
    student_reading = model.teacher_forced(student, codes)
    teacher_reading = model.teacher_forced(teacher, codes)
    own = 0.5 * (model.loss_from(student_reading, codes, items) + model.loss_from(teacher_reading, codes, items))
    (student_logits, student_summary, _), (teacher_logits, teacher_summary, _) = student_reading, teacher_reading
    if weight == 0.0:
        return own
    kls = [_kl(t, s) for t, s in zip(teacher_logits, student_logits)]
    if model.item_head is not None:
        known = model.item_head.known  # outside the catalogue both are -inf: no mass to compare
        kls.append(_kl(model.item_head.logits(teacher_summary)[:, known],
                       model.item_head.logits(student_summary)[:, known]))
    return own + weight * torch.stack(kls).mean().to(own.dtype)


def _kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(teacher) ‖ softmax(student)), mean over rows, the teacher side without gradient."""
    teacher_log_p = F.log_softmax(teacher_logits.detach().float(), dim=-1)
    return F.kl_div(F.log_softmax(student_logits.float(), dim=-1), teacher_log_p, log_target=True,
                    reduction="batchmean")
