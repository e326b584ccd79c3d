"""Make the tokenizer that `benchctl sim` embeds (sim/src/tokenizer.json).

A byte-level BPE, 4096 tokens, trained on a seeded pseudo-English corpus: the same kind of
tokenizer real models ship (Qwen, Llama 3), so random prompts of an exact token length are tested
against merges that cross word boundaries, not a toy word-level vocabulary. No network needed.
Usage: pip install tokenizers==0.23.3 && python3 scripts/make_sim_tokenizer.py sim/src/tokenizer.json
"""
import random, sys
from tokenizers import Tokenizer, models, trainers, pre_tokenizers, decoders

out = sys.argv[1]
rng = random.Random(20261128)
onsets = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "v", "w", "st", "tr", "pl", "ch", "th", "sh"]
nuclei = ["a", "e", "i", "o", "u", "ea", "ou", "ai", "io"]
codas = ["", "", "n", "r", "s", "t", "l", "nd", "ng", "st", "ck"]
def word():
    return "".join(rng.choice(onsets) + rng.choice(nuclei) + rng.choice(codas) for _ in range(rng.randint(1, 3)))
words = [word() for _ in range(6000)] + ["the", "of", "and", "to", "in", "is", "that", "for", "it", "with"] * 40
punct = [".", ",", "?", "!", ";", ":", "\n", " (", ")", " -", "'s", " 0", " 1", " 42", " 2026"]
def sentence():
    s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 18)))
    return s.capitalize() + rng.choice(punct)
corpus = [" ".join(sentence() for _ in range(6)) for _ in range(6000)]
tok = Tokenizer(models.BPE(unk_token=None))
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
tok.train_from_iterator(corpus, trainer)
tok.save(out)
print("vocab", tok.get_vocab_size())
