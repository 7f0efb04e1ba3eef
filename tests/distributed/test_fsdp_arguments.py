"""Lightning's FSDP1-style ``FSDPStrategy`` arguments on Ember's FSDP2 strategy: wrapping policies, FSDP1's
``MixedPrecision`` and ``CPUOffload``, the public attributes, and FSDP1's other keyword arguments. The fits run
on 2 forked CPU ranks over gloo, as in ``test_fsdp.py``."""

from __future__ import annotations

import functools
import sys
import warnings

import pytest
import torch
from tests.helpers.distributed_models import (
    NormedLayers,
    TwoLayers,
    loader,
    read_records,
    sharding_trainer,
    train_in_one_process,
    write_record,
)
from torch import nn
from torch.distributed.fsdp import (
    BackwardPrefetch,
    CPUOffload,
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecision,
    MixedPrecisionPolicy,
    ShardingStrategy,
)
from torch.distributed.fsdp.wrap import (
    CustomPolicy,
    ModuleWrapPolicy,
    lambda_auto_wrap_policy,
    size_based_auto_wrap_policy,
    transformer_auto_wrap_policy,
)

from ember.callbacks import ModelCheckpoint
from ember.distributed import FSDPStrategy
from ember.distributed.wrap_policies import layers_chosen_by_rule
from ember.precision import HalfPrecision
from ember.precision import MixedPrecision as AmpPrecision

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork-based jobs are tested on Linux"),
    pytest.mark.timeout(120),
]


@pytest.fixture(autouse=True)
def clean_env(no_rank_variables):
    """No rank variables of an outer launcher (the forked ranks set their own)."""


def fsdp_trainer(tmp_path, strategy, **kwargs):
    return sharding_trainer(tmp_path, strategy, max_epochs=1, **kwargs)


# ---- wrapping policies -----------------------------------------------------------------------------
def test_module_wrap_policy_and_the_transformer_partial_are_read_as_their_layer_classes():
    transformer = functools.partial(transformer_auto_wrap_policy, transformer_layer_cls={nn.Linear, nn.Conv1d})
    strategy = FSDPStrategy(auto_wrap_policy=ModuleWrapPolicy({nn.Linear}), activation_checkpointing_policy=transformer)
    assert strategy._wrap_policy == (nn.Linear,)
    assert set(strategy._checkpoint_policy) == {nn.Linear, nn.Conv1d}
    strategy = FSDPStrategy(auto_wrap_policy=transformer, activation_checkpointing_policy=ModuleWrapPolicy({nn.ReLU}))
    assert set(strategy._wrap_policy) == {nn.Linear, nn.Conv1d} and strategy._checkpoint_policy == (nn.ReLU,)


@pytest.mark.parametrize(
    "policy",
    [
        {"not a class"},
        functools.partial(transformer_auto_wrap_policy),  # no `transformer_layer_cls`: FSDP1's call would fail
        lambda module: True,  # a function of the layer alone, which FSDP1 would call with three arguments
        nn.Linear(1, 1),
    ],
    ids=["strings", "transformer-without-classes", "one-argument-function", "a-module"],
)
def test_policies_fsdp1_could_not_call_are_refused_naming_the_accepted_forms(policy):
    for argument in ("auto_wrap_policy", "activation_checkpointing_policy"):
        with pytest.raises(TypeError) as error:
            FSDPStrategy(**{argument: policy})
        message = str(error.value)
        assert message.startswith(f"`FSDPStrategy({argument}=")
        assert "a set of layer classes, `ModuleWrapPolicy({...})`" in message
        assert "`CustomPolicy(lambda_fn)`" in message
        assert "`policy(module=..., recurse=..., nonwrapped_numel=...)`" in message
        assert "A function of the layer alone goes in `CustomPolicy(fn)`" in message


class SizedLayers(nn.Module):
    """``block`` (Sequential of 8->8 and 8->4: 72 + 36 parameters) and ``head`` (4->1: 5), 113 in all."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 4))
        self.head = nn.Linear(4, 1)


def _named(model: nn.Module, layers: set[nn.Module]) -> list[str]:
    return sorted(name for name, module in model.named_modules() if module in layers)


@pytest.mark.parametrize(
    ("rule", "ignore_head", "expected"),
    [
        # FSDP1's size rule: a layer is wrapped once what is left unwrapped below it reaches the minimum
        (functools.partial(size_based_auto_wrap_policy, min_num_params=40), False, ["block.0"]),
        (functools.partial(size_based_auto_wrap_policy, min_num_params=30), False, ["block.0", "block.1"]),
        (functools.partial(size_based_auto_wrap_policy, min_num_params=5), False, ["block.0", "block.1", "head"]),
        # neither layer of the Sequential reaches 100 alone; the 108 left unwrapped in it do: wrapped as one
        (functools.partial(size_based_auto_wrap_policy, min_num_params=100), False, ["block"]),
        # an ignored module is neither walked into nor counted: 108 left at the root, below 110
        (functools.partial(size_based_auto_wrap_policy, min_num_params=110), True, []),
        (
            functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: isinstance(m, nn.Sequential)),
            False,
            ["block"],
        ),
        (lambda module, recurse, nonwrapped_numel: recurse or nonwrapped_numel < 10, False, ["head"]),
        (lambda module, recurse, nonwrapped_numel: recurse or nonwrapped_numel < 10, True, []),
        (CustomPolicy(lambda m: isinstance(m, nn.Linear)), False, ["block.0", "block.1", "head"]),
        (CustomPolicy(lambda m: isinstance(m, nn.Linear)), True, ["block.0", "block.1"]),
    ],
)
def test_a_rule_chooses_the_layers_fsdp1_would_wrap(rule, ignore_head, expected):
    model = SizedLayers()
    ignored = [model.head] if ignore_head else []
    assert _named(model, layers_chosen_by_rule(model, rule, ignored)) == expected


def test_a_policy_object_of_the_programs_own_chooses_its_layers_as_fsdp1_asks_it():
    from torch.distributed.fsdp.wrap import _Policy

    class EveryOther(_Policy):  # FSDP1's interface for policy objects: `_run_policy` names the layers to wrap
        def _run_policy(self, root_module, ignored_modules, root_kwargs):
            layers = [m for m in root_module.modules() if isinstance(m, nn.Linear) and m not in ignored_modules]
            return {layer: dict(root_kwargs) for layer in layers[::2]}

    model = SizedLayers()
    strategy = FSDPStrategy(auto_wrap_policy=EveryOther())
    assert _named(model, layers_chosen_by_rule(model, strategy._wrap_policy)) == ["block.0", "head"]


def test_a_custom_policys_per_layer_fsdp1_arguments_are_named_in_a_warning():
    model = SizedLayers()
    policy = CustomPolicy(lambda m: {"sharding_strategy": ShardingStrategy.SHARD_GRAD_OP} if m is model.head else False)
    with pytest.warns(UserWarning, match=r"returns FSDP1 arguments for some layers \(\['sharding_strategy'\]\)"):
        chosen = layers_chosen_by_rule(model, policy)
    assert _named(model, chosen) == ["head"]


class NestedLayers(TwoLayers):
    """``first`` is a ``Sequential`` around a ``Linear``: a wrapped layer inside another wrapped layer."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(4, 8))

    def on_train_start(self) -> None:
        sharded = [name for name, module in self.named_modules() if isinstance(module, FSDPModule)]
        write_record(self, {"sharded": sharded, "checkpointed": type(self.first[0]).__name__})


def test_fsdp1_policies_shard_nested_layers_inside_out_and_train_like_one_process(tmp_path):
    torch.manual_seed(0)
    model, reference = NestedLayers(), NestedLayers()
    reference.load_state_dict(model.state_dict())
    strategy = FSDPStrategy(
        auto_wrap_policy=ModuleWrapPolicy({nn.Sequential, nn.Linear}),
        activation_checkpointing_policy=functools.partial(
            transformer_auto_wrap_policy, transformer_layer_cls={nn.Linear}
        ),
        start_method="fork",
    )
    fsdp_trainer(tmp_path, strategy, enable_checkpointing=False).fit(model, loader(16, 2))
    # each Linear is sharded inside its checkpoint wrapper, and the Sequential around the first one
    sharded = ["first", "first.0._checkpoint_wrapped_module", "second._checkpoint_wrapped_module"]
    assert read_records(tmp_path) == [{"sharded": sharded, "checkpointed": "CheckpointWrapper"}] * 2
    train_in_one_process(reference)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("policy", "sharded"),
    [
        # chosen on the layers as given: the Linear inside `first` (40 parameters), not `second` (9)
        (functools.partial(size_based_auto_wrap_policy, min_num_params=20), ["first.0._checkpoint_wrapped_module"]),
        (CustomPolicy(lambda m: isinstance(m, nn.Sequential)), ["first"]),
    ],
    ids=["size-based", "custom-policy"],
)
def test_fsdp1_rules_shard_the_layers_fsdp1_wraps_and_train_like_one_process(tmp_path, policy, sharded):
    torch.manual_seed(0)
    model, reference = NestedLayers(), NestedLayers()
    reference.load_state_dict(model.state_dict())
    checkpointing = functools.partial(lambda_auto_wrap_policy, lambda_fn=lambda m: isinstance(m, nn.Linear))
    strategy = FSDPStrategy(auto_wrap_policy=policy, activation_checkpointing_policy=checkpointing, start_method="fork")
    fsdp_trainer(tmp_path, strategy, enable_checkpointing=False).fit(model, loader(16, 2))
    assert read_records(tmp_path) == [{"sharded": sharded, "checkpointed": "CheckpointWrapper"}] * 2
    train_in_one_process(reference)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, atol=1e-6, rtol=1e-5)


# ---- FSDP1's MixedPrecision ------------------------------------------------------------------------
class BufferedLayers(NormedLayers):
    """What each layer computes in, recorded.

    Under ``MixedPrecision(param_dtype=bf16, buffer_dtype=bf16)`` with an auto-wrap policy, FSDP1 computes
    the linear layers in bfloat16 and the batch norm in float32, and multiplies by the buffer in bfloat16:
    left in float32, the buffer would make the second layer's input float32 against its bfloat16 weight.
    """

    def on_train_start(self) -> None:
        for name in ("first", "norm"):  # each layer's input and weight, inside FSDP's casts
            self.get_submodule(name).register_forward_pre_hook(
                lambda module, args, name=name: self.seen.update({name: f"{args[0].dtype} {module.weight.dtype}"})
            )

    def training_step(self, batch, batch_idx):
        x, y = batch
        hidden = self.norm(self.first(x))
        self.seen["norm output"] = str(hidden.dtype)
        self.seen["scale"] = str(self.scale.dtype)
        out = self.second(torch.relu(hidden) * self.scale)
        return nn.functional.mse_loss(out.float(), y)


def test_fsdp1_mixed_precision_casts_like_fsdp1_and_checkpoints_keep_the_buffers_dtype(tmp_path):
    config = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32, buffer_dtype=torch.bfloat16)
    strategy = FSDPStrategy(auto_wrap_policy={nn.Linear}, mixed_precision=config, start_method="fork")
    assert strategy.mixed_precision_config is config  # Lightning: the argument as it was given
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpts")
    model = BufferedLayers()
    fsdp_trainer(tmp_path, strategy, callbacks=[checkpoint]).fit(model, loader(16, 2))
    assert (
        read_records(tmp_path)
        == [
            {
                "first": "torch.bfloat16 torch.bfloat16",  # the root cast the batch (`cast_root_forward_inputs`)
                "norm": "torch.float32 torch.float32",  # `_module_classes_to_ignore`: in float32
                "norm output": "torch.bfloat16",  # ... and cast back
                "scale": "torch.bfloat16",  # `buffer_dtype`
            }
        ]
        * 2
    )
    saved = torch.load(checkpoint.best_model_path, weights_only=True)["state_dict"]
    assert {key: value.dtype for key, value in saved.items() if value.is_floating_point()} == dict.fromkeys(
        ["first.weight", "first.bias", "second.weight", "second.bias", "norm.weight", "norm.bias"]
        + ["norm.running_mean", "norm.running_var", "scale"],
        torch.float32,
    )


def test_fsdp1_mixed_precision_maps_onto_fsdp2_policies_per_layer():
    config = MixedPrecision(param_dtype=torch.float16, reduce_dtype=torch.bfloat16, cast_forward_inputs=False)
    plan = FSDPStrategy(mixed_precision=config)._precision_plan()
    assert plan.layers == MixedPrecisionPolicy(torch.float16, torch.bfloat16, cast_forward_inputs=False)
    assert plan.root == MixedPrecisionPolicy(torch.float16, torch.bfloat16, cast_forward_inputs=True)
    assert plan.full == MixedPrecisionPolicy(torch.float32, output_dtype=torch.float16)
    assert plan.full_classes == (nn.modules.batchnorm._BatchNorm,) and plan.buffer_dtype is None
    config = MixedPrecision(param_dtype=torch.float16, cast_forward_inputs=True, cast_root_forward_inputs=False)
    assert FSDPStrategy(mixed_precision=config)._precision_plan().root.cast_forward_inputs is True
    # FSDP2's own policy is taken as it is
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, output_dtype=torch.float32)
    assert FSDPStrategy(mixed_precision=policy)._precision_plan() == type(plan)(policy, policy)
    with pytest.warns(UserWarning, match=r"keep_low_precision_grads=True\)` is ignored: FSDP2 keeps the gradients"):
        FSDPStrategy(mixed_precision=MixedPrecision(param_dtype=torch.float16, keep_low_precision_grads=True))
    with pytest.raises(TypeError, match=r"mixed_precision='bf16'\)` is not supported: pass `torch.distributed"):
        FSDPStrategy(mixed_precision="bf16")


def test_mixed_precision_config_is_the_argument_or_what_the_precision_plugin_chooses():
    strategy = FSDPStrategy()
    # no plugin yet: Lightning's default FSDPPrecision("32-true")
    assert strategy.mixed_precision_config == MixedPrecision(torch.float32, torch.float32, torch.float32)
    strategy.precision_plugin = HalfPrecision("bf16-true")
    assert strategy.mixed_precision_config == MixedPrecision(torch.bfloat16, torch.bfloat16, torch.bfloat16)
    # Ember's "bf16-mixed" reduces in float32 and leaves the buffers alone (Lightning says bfloat16 for all three)
    strategy.precision_plugin = AmpPrecision("bf16-mixed", "cpu")
    assert strategy.mixed_precision_config == MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    assert strategy._precision_plan().root == MixedPrecisionPolicy(torch.bfloat16, torch.float32)
    given = MixedPrecision(param_dtype=torch.float16)
    strategy = FSDPStrategy(mixed_precision=given)
    strategy.precision_plugin = AmpPrecision("bf16-mixed", "cpu")
    assert strategy.mixed_precision_config is given  # the argument wins over the plugin, as in Lightning


# ---- cpu_offload, sharding_strategy, kwargs --------------------------------------------------------
def test_cpu_offload_is_read_from_offload_params_and_kept_as_fsdp1s_cpu_offload():
    for given, offload in [
        (CPUOffload(offload_params=False), False),
        (CPUOffload(offload_params=True), True),
        (None, False),
        (False, False),
        (True, True),
    ]:
        strategy = FSDPStrategy(cpu_offload=given)
        assert strategy.cpu_offload == CPUOffload(offload_params=offload)
        assert isinstance(strategy._shard_options()["offload_policy"], CPUOffloadPolicy) is offload


def test_sharding_strategy_is_the_enum_and_kwargs_hold_use_orig_params_as_in_lightning():
    assert FSDPStrategy().sharding_strategy is ShardingStrategy.FULL_SHARD
    assert FSDPStrategy(sharding_strategy="shard_grad_op").sharding_strategy is ShardingStrategy.SHARD_GRAD_OP
    strategy = FSDPStrategy(sharding_strategy=ShardingStrategy.NO_SHARD)
    assert strategy.sharding_strategy is ShardingStrategy.NO_SHARD and strategy._layout == "replicate"
    assert FSDPStrategy().kwargs == {"use_orig_params": True}
    assert FSDPStrategy(use_orig_params=True, limit_all_gathers=True).kwargs == {
        "use_orig_params": True,
        "limit_all_gathers": True,
    }


def test_fsdp1_keyword_arguments_without_an_fsdp2_counterpart_warn_naming_the_argument_and_why():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the values FSDP2 already behaves as: silent
        FSDPStrategy(
            use_orig_params=True,
            limit_all_gathers=True,
            forward_prefetch=False,
            backward_prefetch=BackwardPrefetch.BACKWARD_PRE,
            sync_module_states=False,
            param_init_fn=None,
        )
    expected = {
        "use_orig_params=False": "FSDP2 always trains the module's own parameters",
        "limit_all_gathers=False": "FSDP2 always limits the all-gathers in flight",
        "forward_prefetch=True": "FSDP2 overlaps each layer's all-gather",
        "backward_prefetch=<BackwardPrefetch.BACKWARD_POST: 2>": "as `BackwardPrefetch.BACKWARD_PRE`",
        "sync_module_states=True": "FSDP2 does not broadcast rank 0's weights",
        "process_group='a group'": "pass `device_mesh=(replicas, shards)`",
    }
    with pytest.warns(UserWarning) as record:
        strategy = FSDPStrategy(
            use_orig_params=False,
            limit_all_gathers=False,
            forward_prefetch=True,
            backward_prefetch=BackwardPrefetch.BACKWARD_POST,
            sync_module_states=True,
            process_group="a group",
        )
    messages = [str(w.message) for w in record]
    assert len(messages) == len(expected)
    for (argument, reason), message in zip(expected.items(), messages):
        assert message.startswith(f"`FSDPStrategy({argument})` is ignored: ") and reason in message
    assert strategy.kwargs["use_orig_params"] is False  # kept as given, as Lightning keeps them
    with pytest.raises(TypeError, match=r"`FSDPStrategy\(use_orig_param=...\)` is not an FSDP argument"):
        FSDPStrategy(use_orig_param=True)


class RecordsIgnored(TwoLayers):
    def on_train_start(self) -> None:
        write_record(self, {name: type(p).__name__ for name, p in self.named_parameters()})


def test_ignored_modules_and_states_stay_unsharded(tmp_path):
    model = RecordsIgnored()
    strategy = FSDPStrategy(
        auto_wrap_policy={nn.Linear},
        ignored_modules=[model.second],
        ignored_states=[model.first.bias],
        start_method="fork",
    )
    fsdp_trainer(tmp_path, strategy, enable_checkpointing=False).fit(model, loader(16, 2))
    expected = {"first.weight": "DTensor", "first.bias": "Parameter", "second.weight": "Parameter"}
    assert read_records(tmp_path) == [{**expected, "second.bias": "Parameter"}] * 2
    assert strategy._shard_options()["ignored_params"] == {model.second.weight, model.second.bias, model.first.bias}
