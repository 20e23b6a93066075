"""The model organism: a small Qwen3-VL-MoE trained here on paired problems (issue 16).

- :mod:`~rd_eval.organism.problems`: the paired problems, their train / validation / held-out splits and images;
- :mod:`~rd_eval.organism.spec`: what an organism is (architecture, training recipe), validated once;
- :mod:`~rd_eval.organism.assets`: its tokenizer, processor, config and freshly initialised model;
- :mod:`~rd_eval.organism.prompts`: the three forms (text QA, transcription, image QA) as lmms-eval's chat turns;
- :mod:`~rd_eval.organism.batches`: examples as the padded tensors Qwen3-VL-MoE takes;
- :mod:`~rd_eval.organism.train`: the resumable, seeded training loop and the saved model folder;
- :mod:`~rd_eval.organism.evaluate`: greedy held-out accuracy per form (text, transcription, image);
- :mod:`~rd_eval.organism.induce`: phase (c), the routing distraction induced on the band layers' routers;
- :mod:`~rd_eval.organism.recipe`: the whole recipe (plain, image-QA fine-tuning, induction) as resumable phases;
- :mod:`~rd_eval.organism.figures`: held-out figures with rd-eval's soft intervention and random control, with CIs;
- :mod:`~rd_eval.organism.shipped`: the shipped organism's folder (``model/``: weights, files, card).
"""
