"""Lightning's ``demos.lstm``: an LSTM language model on WikiText2, trained on sequential batches.

``SimpleLSTM`` is Lightning's (after PyTorch's word-language-model example): an embedding, a
4-layer LSTM of width 512 with dropout 0.2 and a decoder to log-probabilities. ``SequenceSampler``
cuts the dataset into ``batch_size`` contiguous streams so that batch ``i + 1`` continues where
batch ``i`` ended, which lets ``LightningLSTM`` carry its hidden state from one step to the next
(detached) within an epoch.

Example::

    from ember.demos.lstm import LightningLSTM

    pl.Trainer(max_steps=100, gradient_clip_val=0.25).fit(LightningLSTM())   # reads ./data/wikitext-2.txt
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.utils.data import DataLoader, Sampler

from ember.core.module import LightningModule
from ember.demos.transformer import WikiText2


class SimpleLSTM(nn.Module):
    """Embedding, ``nn.LSTM`` (batch first) and a linear decoder, with dropout before and after the LSTM.

    ``forward(input, hidden)`` returns log-probabilities of shape ``(batch * time, vocab_size)``
    and the new hidden state.

    Example::

        model = SimpleLSTM(vocab_size=100, ninp=16, nhid=16, nlayers=2)
        log_probs, hidden = model(torch.randint(100, (4, 35)), model.init_hidden(4))
    """

    def __init__(
        self, vocab_size: int = 33278, ninp: int = 512, nhid: int = 512, nlayers: int = 4, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab_size, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout, batch_first=True)
        self.decoder = nn.Linear(nhid, vocab_size)
        self.nlayers = nlayers
        self.nhid = nhid
        self.init_weights()

    def init_weights(self) -> None:
        """Embedding and decoder weights uniform in [-0.1, 0.1], decoder bias zero."""
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input: Tensor, hidden: tuple[Tensor, Tensor]) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        output, hidden = self.rnn(self.drop(self.encoder(input)), hidden)
        decoded = self.decoder(self.drop(output)).view(-1, self.vocab_size)
        return F.log_softmax(decoded, dim=1), hidden

    def init_hidden(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """Zero ``(h, c)`` states of shape ``(nlayers, batch_size, nhid)``, on the model's device and dtype."""
        weight = next(self.parameters())
        shape = (self.nlayers, batch_size, self.nhid)
        return weight.new_zeros(shape), weight.new_zeros(shape)


class SequenceSampler(Sampler[list[int]]):
    """Batches of ``batch_size`` indices, one from each of ``batch_size`` contiguous streams.

    With ``n`` items, the streams are ``len(dataset) // batch_size`` long; batch ``i`` is
    ``[i, i + chunk, i + 2 * chunk, ...]`` (the last ``n % batch_size`` items are never used).

    Example::

        list(SequenceSampler(range(10), batch_size=3))   # [[0, 3, 6], [1, 4, 7], [2, 5, 8]]
    """

    def __init__(self, dataset: Sized, batch_size: int) -> None:
        super().__init__()
        self.dataset = dataset
        self.batch_size = batch_size
        self.chunk_size = len(self.dataset) // self.batch_size

    def __iter__(self) -> Iterator[list[int]]:
        n = len(self.dataset)
        stop = n - n % self.batch_size
        for i in range(self.chunk_size):
            yield list(range(i, stop, self.chunk_size))

    def __len__(self) -> int:
        return self.chunk_size


class LightningLSTM(LightningModule):
    """``SimpleLSTM`` trained on WikiText2 in 20 streams (NLL loss, SGD with lr 20), logging ``train_loss``.

    The hidden state is carried, detached, from each step to the next and reset at the end of
    each training epoch.

    Example::

        pl.Trainer(max_epochs=1).fit(LightningLSTM())   # reads ./data/wikitext-2.txt
    """

    def __init__(self, vocab_size: int = 33278) -> None:
        super().__init__()
        self.model = SimpleLSTM(vocab_size=vocab_size)
        self.hidden: tuple[Tensor, Tensor] | None = None

    def on_train_epoch_end(self) -> None:
        self.hidden = None

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        input, target = batch
        if self.hidden is None:
            self.hidden = self.model.init_hidden(input.size(0))
        hidden = (self.hidden[0].detach(), self.hidden[1].detach())
        output, self.hidden = self.model(input, hidden)
        loss = F.nll_loss(output, target.view(-1))
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def prepare_data(self) -> None:
        WikiText2(download=True)

    def train_dataloader(self) -> DataLoader:
        dataset = WikiText2()
        return DataLoader(dataset, batch_sampler=SequenceSampler(dataset, batch_size=20))

    def configure_optimizers(self) -> Optimizer:
        return torch.optim.SGD(self.parameters(), lr=20.0)
