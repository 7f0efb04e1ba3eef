"""The ``DeepSpeedStrategy`` arguments whose config Lightning's strategy recorded in
``tests/fixtures/lightning_deepspeed_config.json``: each case gives the strategy's arguments, the
Trainer's settings for ``fit`` and the training loader's batch size (None: no loader attached)."""

DEEPSPEED_CONFIG_CASES = [
    {"name": "defaults", "arguments": {}, "trainer": {}, "batch_size": 4},
    {"name": "stage_1", "arguments": {"stage": 1}, "trainer": {"accumulate_grad_batches": 2}, "batch_size": 3},
    {
        "name": "stage_2_offload",
        "arguments": {"stage": 2, "offload_optimizer": True},
        "trainer": {"gradient_clip_val": 0.5, "precision": "bf16-mixed"},
        "batch_size": 8,
    },
    {
        "name": "stage_3_offload_nvme",
        "arguments": {
            "stage": 3,
            "offload_optimizer": True,
            "offload_parameters": True,
            "remote_device": "nvme",
            "offload_params_device": "nvme",
            "offload_optimizer_device": "nvme",
            "nvme_path": "/scratch",
            "pin_memory": True,
        },
        "trainer": {"precision": "16-mixed"},
        "batch_size": None,
    },
    {
        "name": "tuned",
        "arguments": {
            "stage": 3,
            "sub_group_size": 1000,
            "contiguous_gradients": False,
            "overlap_comm": False,
            "allgather_partitions": False,
            "reduce_scatter": False,
            "allgather_bucket_size": 5000,
            "reduce_bucket_size": 6000,
            "zero_allow_untested_optimizer": False,
            "logging_batch_size_per_gpu": 7,
            "partition_activations": True,
            "cpu_checkpointing": True,
            "contiguous_memory_optimization": True,
            "synchronize_checkpoint_boundary": True,
            "block_size": 4096,
            "queue_depth": 2,
            "single_submit": True,
            "overlap_events": False,
            "thread_count": 3,
            "loss_scale": 128.0,
            "initial_scale_power": 8,
            "loss_scale_window": 50,
            "hysteresis": 3,
            "min_loss_scale": 2,
        },
        "trainer": {"precision": "16-true", "accumulate_grad_batches": 4, "gradient_clip_val": 1.0},
        "batch_size": 2,
    },
    {
        "name": "no_zero",
        "arguments": {"zero_optimization": False},
        "trainer": {"precision": "bf16-true"},
        "batch_size": 5,
    },
    {
        "name": "given_config",
        "arguments": {
            "config": {"train_micro_batch_size_per_gpu": 16, "gradient_clipping": 2.0, "bf16": {"enabled": False}}
        },
        "trainer": {"precision": "bf16-mixed", "gradient_clip_val": 0.1, "accumulate_grad_batches": 3},
        "batch_size": 4,
    },
]
