"""What the article says that no experiment tests: its sentences, verbatim, with the reason.

The report lists these beside the verdicts, so a reader sees the whole article, not only the
part that was run.
"""

from __future__ import annotations

__all__ = ["UNTESTED"]

#: (sentence of the article, verbatim; why no experiment judges it)
UNTESTED: tuple[tuple[str, str], ...] = (
    ("Proposed by Geoffrey Hinton in his 2012 Coursera lecture on neural networks, RMSProp "
     "scales each parameter's update by an exponentially decaying running average of the "
     "squared gradients seen so far.",
     "history and a definition: the definition is what the library's parity tests check"),
    ("Parameters whose gradients have been consistently large receive a smaller effective step "
     "size, while parameters with small or sparse gradients receive larger updates.",
     "sparse gradients are not simulated by any experiment"),
    ("Each step requires one elementwise square, one elementwise multiply-add to update $ v_t $, "
     "one elementwise square root, and one elementwise division.",
     "an operation count; step time is measured by `rmsprop bench`, not judged here"),
    ("These operations are trivially parallel on GPUs and contribute negligible overhead "
     "compared to the forward and backward passes through the network.",
     "needs a GPU and whole-network timings; not run here"),
    ("Because the moment estimates accumulate over batches, the meaningful unit of progress is "
     "the optimizer step rather than the wall-clock second; learning-rate schedules and warmup "
     "periods are typically expressed in steps.",
     "a convention, not a measurable claim"),
    ("Most deep-learning frameworks save and restore the optimizer state automatically when "
     "checkpointing.",
     "a survey of frameworks, not an experiment"),
    ("Empirically, RMSProp with momentum was the default for many deep recurrent network and "
     "policy-gradient training pipelines through the mid-2010s and continues to appear as a "
     "baseline in reinforcement-learning libraries.",
     "history; the rnn and policy-gradient experiments test performance, not adoption"),
    ("In settings where the gradients are already relatively well-behaved, the two are often "
     "interchangeable, and RMSProp's simplicity and slightly lower memory footprint can be an "
     "advantage.",
     "covered only in part (digits: accuracy; memory: footprint); 'an advantage' is not judged"),
    ("In practice this is rarely a problem for over-parameterized neural networks, but it does "
     "mean that RMSProp should not be relied on as a black-box solver in settings where "
     "convergence guarantees matter.",
     "no over-parameterised network is run against the counterexample; advice, not a claim"),
    ("Plain SGD with a single global learning rate either bounces back and forth across the "
     "steep walls (if the rate is too large) or crawls along the floor (if the rate is too "
     "small).",
     "shown by valley's lr sweep, not judged separately"),
)
