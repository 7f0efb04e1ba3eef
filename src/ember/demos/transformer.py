"""Lightning's ``demos.transformer``: a small transformer language model on the WikiText2 text.

The model, its initialization and its data are Lightning's (after PyTorch's word-language-model
example): ``Transformer`` is an embedding, a positional encoding, ``nn.Transformer`` (2 + 2 layers
of width 200, 2 heads, dropout 0.2) and a linear decoder to log-probabilities over the vocabulary.
``WikiText2`` downloads PyTorch's copy of the WikiText-2 training text to
``<data_dir>/wikitext-2.txt`` once, then reads it as blocks of 35 token ids.

Importing this module gives ``torch.nn.MultiheadAttention`` a public ``reset_parameters`` where
torch has only the private one, as Lightning's module does (initialization on the meta device
calls it).

Example::

    from ember.demos.transformer import LightningTransformer, WikiText2

    dataset = WikiText2()   # ./data/wikitext-2.txt, downloaded when missing
    pl.Trainer(max_steps=100).fit(LightningTransformer(vocab_size=dataset.vocab_size), DataLoader(dataset))
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules import MultiheadAttention
from torch.utils.data import DataLoader, Dataset

from ember.core.module import LightningModule
from ember.demos._download import fetch

WIKITEXT2_URL = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/train.txt"

if hasattr(MultiheadAttention, "_reset_parameters") and not hasattr(MultiheadAttention, "reset_parameters"):
    MultiheadAttention.reset_parameters = MultiheadAttention._reset_parameters  # type: ignore[attr-defined]


class Transformer(nn.Module):
    """Embedding, positional encoding, ``nn.Transformer`` (batch first) and a decoder to the vocabulary.

    ``forward(inputs, target)`` takes two ``(batch, time)`` id tensors and returns log-probabilities
    of shape ``(batch * time, vocab_size)``; ``target`` is masked so no position sees a later one.

    Example::

        model = Transformer(vocab_size=100)
        model(torch.randint(100, (2, 35)), torch.randint(100, (2, 35))).shape   # (70, 100)
    """

    def __init__(
        self,
        vocab_size: int = 33278,  # WikiText2's
        ninp: int = 200,
        nhead: int = 2,
        nhid: int = 200,
        nlayers: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.pos_encoder = PositionalEncoding(ninp, dropout)
        self.embedding = nn.Embedding(vocab_size, ninp)
        self.transformer = nn.Transformer(
            d_model=ninp,
            nhead=nhead,
            num_encoder_layers=nlayers,
            num_decoder_layers=nlayers,
            dim_feedforward=nhid,
            dropout=dropout,
            batch_first=True,
        )
        self.decoder = nn.Linear(ninp, vocab_size)
        self.ninp = ninp
        self.vocab_size = vocab_size
        self.src_mask: Tensor | None = None

    def generate_square_subsequent_mask(self, size: int) -> Tensor:
        """A ``(size, size)`` float mask: ``-inf`` above the diagonal (later positions), 0 elsewhere."""
        upper = torch.triu(torch.ones(size, size), diagonal=1)
        return upper.float().masked_fill(upper == 1, float("-inf")).masked_fill(upper == 0, 0.0)

    def forward(self, inputs: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        _, length = inputs.shape  # (batch, sequence); an unbatched input is Lightning's ValueError too
        if self.src_mask is None or self.src_mask.size(0) != length:
            self.src_mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        if mask is None:
            mask = self.generate_square_subsequent_mask(length).to(inputs.device)
        scale = math.sqrt(self.ninp)
        src = self.pos_encoder(self.embedding(inputs) * scale)
        tgt = self.pos_encoder(self.embedding(target) * scale)
        output = self.decoder(self.transformer(src, tgt, tgt_mask=mask))
        return F.log_softmax(output, dim=-1).view(-1, self.vocab_size)


class PositionalEncoding(nn.Module):
    """Adds a sinusoidal position code to ``(batch, time, dim)`` inputs, then dropout.

    The table of ``max_len`` positions is built on the first call, on the input's device; it is
    kept as a plain attribute (neither a parameter nor a buffer), as in Lightning. As there, every
    position of a sequence gets the code of position ``time``.

    Example::

        PositionalEncoding(200)(torch.zeros(2, 35, 200)).shape   # (2, 35, 200)
    """

    def __init__(self, dim: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        self.dim = dim
        self.max_len = max_len
        self.pe: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.pe is None:
            self.pe = self._init_pos_encoding(device=x.device)
        return self.dropout(x + self.pe[:, x.size(1)])

    def _init_pos_encoding(self, device: torch.device) -> Tensor:
        table = torch.zeros(self.max_len, self.dim, device=device)
        position = torch.arange(0, self.max_len, dtype=torch.float, device=device).unsqueeze(1)
        frequency = torch.exp(torch.arange(0, self.dim, 2, device=device).float() * (-math.log(10000.0) / self.dim))
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        return table.unsqueeze(0)


class WikiText2(Dataset):
    """The WikiText-2 training text as ``(inputs, target)`` pairs of ``block_size`` token ids.

    Each line's words and an ``<eos>`` become ids, numbered in order of first appearance; item
    ``i`` is the ids ``[i * block_size, (i + 1) * block_size)`` and the same shifted by one.
    ``download=True`` fetches the file to ``<data_dir>/wikitext-2.txt`` unless it is there already,
    so a file placed there by hand is used as it is.

    Example::

        dataset = WikiText2(Path("data"))
        inputs, target = dataset[0]   # two tensors of 35 ids
        dataset.vocab_size            # 33278 for the full text
    """

    def __init__(self, data_dir: Path = Path("./data"), block_size: int = 35, download: bool = True) -> None:
        super().__init__()
        self.path = Path(data_dir) / "wikitext-2.txt"
        if download:
            self.download(self.path)
        self.data, self.dictionary = tokenize(self.path)
        self.block_size = block_size

    @property
    def vocab_size(self) -> int:
        return len(self.dictionary)

    def __len__(self) -> int:
        return len(self.data) // self.block_size - 1

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        start = index * self.block_size
        end = start + self.block_size
        return self.data[start:end], self.data[start + 1 : end + 1]

    @staticmethod
    def download(destination: Path) -> None:
        """Fetch the text to ``destination`` unless that file exists (its folder is created).

        Raises:
            OSError: the download failed; the message names the URL and the folder, and how to
                place the file by hand.
        """
        destination = Path(destination)
        os.makedirs(destination.parent, exist_ok=True)
        if destination.exists():
            return
        fetch(
            WIKITEXT2_URL,
            destination,
            how=f"download that file on a machine that has network access and save it as {str(destination)!r}"
            " (a file already there is used as it is, with no download)",
        )


class Dictionary:
    """Words and their ids, numbered in order of first appearance.

    Example::

        words = Dictionary()
        words.add_word("the"), words.add_word("cat"), words.add_word("the")   # (0, 1, 0)
    """

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add_word(self, word: str) -> int:
        if word not in self.word2idx:
            self.word2idx[word] = len(self.idx2word)
            self.idx2word.append(word)
        return self.word2idx[word]

    def __len__(self) -> int:
        return len(self.idx2word)


def tokenize(path: Path) -> tuple[Tensor, Dictionary]:
    """The ids (``int64``) of the words of a text file, each line ending in ``<eos>``, and their dictionary.

    Example::

        ids, dictionary = tokenize(Path("data/wikitext-2.txt"))
    """
    assert os.path.exists(path), f"missing file: {path}"
    dictionary = Dictionary()
    lines: list[Tensor] = []
    with open(path, encoding="utf8") as text:
        for line in text:
            ids = [dictionary.add_word(word) for word in [*line.split(), "<eos>"]]
            lines.append(torch.tensor(ids).type(torch.int64))
    return torch.cat(lines), dictionary


class LightningTransformer(LightningModule):
    """``Transformer`` trained on WikiText2 to predict each next token (NLL loss, SGD with lr 0.1).

    Example::

        pl.Trainer(max_steps=100).fit(LightningTransformer())   # reads ./data/wikitext-2.txt
    """

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = Transformer(vocab_size=vocab_size)

    def forward(self, inputs: Tensor, target: Tensor) -> Tensor:
        return self.model(inputs, target)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        inputs, target = batch
        return F.nll_loss(self(inputs, target), target.view(-1))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.model.parameters(), lr=0.1)

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(WikiText2())
