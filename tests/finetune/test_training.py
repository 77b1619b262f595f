"""What every Trainer-based fine-tune shares: the training arguments a recipe becomes (as the Trainer reads
them), and the record of the batches it builds."""



from twofold.finetune.recipes import recipe_for
from twofold.finetune.training import OrderRecorder, train_with, training_args


def test_the_order_recorder_hashes_the_texts_of_every_batch_it_builds():
    built = []
    recorder = OrderRecorder(lambda features: built.append(features) or len(features))
    assert recorder([{"query": "a", "positive": "b", "ids": [1, 2]}, {"query": "c", "label": 1}]) == 2
    again = OrderRecorder(lambda features: None)
    again([{"positive": "b", "query": "a", "ids": [9]}, {"label": 1, "query": "c"}])  # lists are not texts
    assert recorder.batches == again.batches == 1 and recorder.hexdigest == again.hexdigest
    again([{"query": "a"}])
    other = OrderRecorder(lambda features: None)
    other([{"query": "c", "label": 1}, {"query": "a", "positive": "b"}])  # the same texts, another order
    assert len({recorder.hexdigest, again.hexdigest, other.hexdigest}) == 3 and again.batches == 2
    recorder.collator.tag = "the collator's"
    assert recorder.tag == "the collator's" and recorder.steps is None


def test_a_recipe_becomes_the_trainers_arguments(tmp_path):
    from transformers import TrainingArguments

    recipe = recipe_for("classify", epochs=2.5, batch_size=6, warmup_ratio=0.06, weight_decay=0.2, seed=5)
    args = training_args(TrainingArguments, recipe, 4e-5, tmp_path / "work", lr_scheduler_type="constant")
    assert (args.output_dir, args.learning_rate, args.num_train_epochs, args.per_device_train_batch_size) == \
        (str(tmp_path / "work"), 4e-5, 2.5, 6)
    assert args.get_warmup_steps(200) == 12 and args.get_warmup_steps(1000) == 60  # a ratio of the steps
    assert (args.weight_decay, args.seed, args.data_seed, args.lr_scheduler_type) == (0.2, 5, 5, "constant")
    assert (args.save_strategy, args.report_to, args.logging_steps) == ("no", [], 10)


def test_training_goes_through_the_recorder_and_counts_the_optimizer_steps():
    built = []

    class Trainer:
        """The part of a transformers Trainer that train_with uses (a real one trains in test_sft.py)."""

        def __init__(self):
            self.data_collator = lambda features: built.append(features) or "batch"
            self.state = type("State", (), {"global_step": 0})()

        def train(self):
            assert self.data_collator([{"text": "a"}]) == "batch"
            self.state.global_step = 7

    recorder = OrderRecorder(None)
    trainer = Trainer()
    train_with(trainer, recorder)
    assert trainer.data_collator is recorder and (recorder.batches, recorder.steps) == (1, 7)
    assert built == [[{"text": "a"}]]
