r"""NAS-Bench-201 supernet: the paper's setting by default, `:smoke` for a one-minute CPU run.

  python -m close_jax.main --config=configs/nb201.py --workdir=/tmp/nb201
  python -m close_jax.main --config=configs/nb201.py:smoke --workdir=/tmp/nb201_smoke

The default trains on CIFAR-10 train images [0, 40000) for 1000 epochs at batch 512 and ranks the
6466 non-isomorphic cells on train images [40000, 50000) (hours on a GPU, weeks on a CPU). The
smoke variant uses synthetic 8x8 data, C=4, one cell per stage and a few epochs.
"""

import ml_collections


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.space = 'nb201'
  config.method = 'close'  # 'vanilla' | 'close' | 'close_s'
  config.mode = 'train'  # 'train': train, then rank; 'evaluate': rank the latest checkpoint.
  config.seed = 0
  config.prng_impl = 'rbg'  # threefry compiles ~10x slower on XLA:CPU for the same init.
  config.compilation_cache_dir = '~/.cache/close_jax/xla'
  # TensorBoard scalars in WORKDIR/tensorboard beside metrics.jsonl (process 0; needs tensorboardX).
  config.tensorboard = True
  # Data parallel over a mesh of devices: 0 uses every device of every process. batch_size is
  # the global batch; each device trains batch_size / devices images of it.
  config.num_devices = 0

  # Multi-host (TPU pods, SLURM, several GPU machines): one process per host, all started with
  # the same command. Empty fields are detected from the cluster environment by JAX.
  config.distributed = ml_collections.ConfigDict()
  config.distributed.initialize = False
  config.distributed.coordinator_address = ''  # 'host:port' of process 0
  config.distributed.num_processes = 0
  config.distributed.process_id = -1

  config.data = ml_collections.ConfigDict()
  config.data.name = 'cifar10'  # 'cifar10' | 'synthetic' | 'npz' | 'idx' (MNIST format)
  config.data.data_dir = './data'
  config.data.download = True
  config.data.cifar_train_size = 40000
  config.data.npz_path = ''
  # idx: the supernet trains on the first idx_train_size training images, ranks on the rest.
  config.data.idx_dir = '/usr/share/datasets/fashion-mnist'
  config.data.idx_train_size = 50000
  config.data.idx_rank_size = 0  # 0: every training image after the first idx_train_size
  config.data.image_size = 0  # idx: shrink images to this square size (0: as stored)
  config.data.synthetic_num_train = 2048
  config.data.synthetic_num_rank = 512
  config.data.synthetic_image_size = 16
  config.data.synthetic_channels = 3
  config.data.synthetic_num_classes = 10
  config.data.synthetic_seed = 0
  config.data.crop_padding = 4
  config.data.hflip = True

  config.model = ml_collections.ConfigDict()
  config.model.channels = 16
  config.model.cells_per_stage = 5
  config.model.dropout = 0.1
  config.model.dtype = 'float32'  # 'bfloat16' computes in bf16 with fp32 master weights.
  # How an edge picks its op: 'switch' (one conditional per edge: only the chosen op runs),
  # 'dense' (no conditionals: every op folded into one convolution), 'auto' (switch on CPU,
  # dense on GPU/TPU, where each conditional costs a host round trip).
  config.model.edge_impl = 'auto'

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 0.05
  config.optim.momentum = 0.9
  config.optim.weight_decay = 5e-4
  config.optim.grad_clip_norm = 5.0  # 0: no clipping
  # 'train_accuracy' follows the CLOSE paper's wording; the official code watches 'train_loss'.
  config.optim.plateau_metric = 'train_accuracy'
  config.optim.plateau_patience = 30
  # > 0: the patience in optimizer steps instead (rounded to whole epochs of the run; set by
  # budget_scaling='steps' below, or by hand).
  config.optim.plateau_patience_steps = 0
  config.optim.plateau_factor = 0.5

  # Training architectures: 'valid' = the 6321 classes with a live convolution (the official
  # sampler's check_valid); 'all' = all 6466. Ranking always covers all 6466.
  config.train_sampler = 'valid'
  config.batch_size = 512  # the official CLOSE configs use 256
  config.num_epochs = 1000
  # > 0: rescale every epoch-valued setting (switches, SRT, CLOSE-S switch, plateau patience,
  # ranking epochs, checkpoint cadence) to this many epochs in the same proportions (printed).
  config.budget_epochs = 0
  # How budget_epochs treats the plateau patience (close_jax/budget.py): 'steps' keeps its number
  # of optimizer steps, counted at budget_reference_steps_per_epoch (this setting's 40000 images
  # at batch 512); 'epochs' scales it with the run like every other epoch-valued setting.
  config.budget_scaling = 'steps'
  config.budget_reference_steps_per_epoch = 78
  config.checkpoint_every_epochs = 10
  config.keep_checkpoints = 3

  # CLOSE (aw_nas `nasbench-201-close`, node_cl-2468_lr-4_mlp-200x3_wit), epochs 0-based.
  config.close = ml_collections.ConfigDict()
  config.close.cl_schedule = (0, 200, 400, 600, 800)  # a block is added at each; K = len()
  config.close.gate = 'node'  # 'node' (GATE) | 'arch' | 'random' (ablations)
  config.close.wit = 'sum'  # 'sum' (official) | 'copy' | 'none'
  config.close.lr_restart_epochs = (400,)  # SRT
  config.close.close_s_switch_epoch = 400  # CLOSE-S: shared op set -> one copy per edge
  # GATE options beyond the official code (docs/close.md#gate-options); the defaults are official.
  config.close.gate_embed_norm = 'none'  # 'none' | 'layer' (normalise the node embeddings)
  config.close.gate_temperature = 5.0  # Gumbel-softmax temperature of the straight-through grad
  config.close.gate_weight_decay = -1.0  # < 0: the supernet's weight decay
  config.close.gate_lr_multiplier = 1.0  # the GATE's learning rate / the supernet's
  # 'official': as aw_nas's runs, the GATE's output layer is left out of the optimizer (no
  # update, decay or momentum) from each switch until the next SRT; 'none': always trained.
  config.close.gate_head_reset = 'none'
  # 'sgd': the GATE on the supernet's SGD (official); 'adam': AdamW on the GATE's parameters with
  # its own learning rate and decoupled decay (gate_weight_decay; < 0: none), scale-free in the
  # gradient, which the official GATE's embedder gets ~100x smaller than its decay's pull.
  config.close.gate_optimizer = 'sgd'
  config.close.gate_learning_rate = 1e-3  # 'adam' only
  # The GATE's training gradient: 'straight_through' (official: hard one-hot forward, the
  # tempered softmax's gradient), 'soft_annealed' (the Gumbel-softmax mixture of the blocks,
  # gate_temperature annealed to gate_final_temperature over gate_anneal_steps steps, hard
  # after), 'reinforce' (score function; two block draws on the two halves of the batch, each
  # half's loss the other's baseline).
  config.close.gate_mix = 'straight_through'
  config.close.gate_final_temperature = 0.5  # 'soft_annealed' only
  config.close.gate_anneal_steps = 0  # 'soft_annealed' only: > 0 training steps
  # True: each block's logit minus its mean over the architecture's weighted positions, so a
  # preference shared by every edge (the architecture-independent part) cancels.
  config.close.gate_center_logits = False

  config.eval = ml_collections.ConfigDict()
  config.eval.eval_epochs = ()  # also rank after these epochs (rankings.jsonl)
  config.eval.at_end = True  # rank once training is done
  config.eval.at_switches = False  # also rank just before and just after each curriculum switch
  # A column of the shipped table, a CSV path, or 'none' (scores only, no correlations).
  config.eval.ground_truth = 'cifar10_test_200ep'
  config.eval.num_archs = 0  # 0: all 6466 non-isomorphic cells; N: a seeded random subset of N
  # > 0: rankings along the learning curve (before the last epoch: eval_epochs, switches) score a
  # seeded subset of this many of those architectures; the final ranking scores them all.
  config.eval.curve_num_archs = 0
  config.eval.batch_size = 500  # 10000 ranking images = 20 batches, no ragged tail
  config.eval.arch_chunk = 8  # architectures scored per compiled call
  config.eval.seed = 123
  # Score = mean accuracy over this many seeded GATE draws per architecture (1 = official: one
  # draw). All draws run in the same compiled evaluator.
  config.eval.gate_samples = 1
  # 'sample': each architecture's blocks drawn from the GATE (official); 'mode': the GATE's most
  # likely block per edge (deterministic: no evaluation seed changes the ranking).
  config.eval.gate_assignment = 'sample'
  # GATE diagnostics (entropy, spread) each epoch on this many fixed architectures; 0 = off.
  config.eval.gate_probe_archs = 64

  if arg == 'smoke':
    config.data.name = 'synthetic'
    config.data.synthetic_num_train = 512
    config.data.synthetic_num_rank = 128
    config.data.synthetic_image_size = 8
    config.data.crop_padding = 1
    config.model.channels = 4
    config.model.cells_per_stage = 1
    config.batch_size = 64
    config.num_epochs = 9
    config.close.cl_schedule = (0, 3, 6)
    config.close.lr_restart_epochs = (6,)
    config.close.close_s_switch_epoch = 5
    config.eval.eval_epochs = (6,)
    config.checkpoint_every_epochs = 1
    config.eval.num_archs = 24
    config.eval.batch_size = 64
  elif arg:
    raise ValueError(f'unknown variant {arg!r} of configs/nb201.py: expected nothing or "smoke"')
  return config
