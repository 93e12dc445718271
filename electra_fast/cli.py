"""The `electra-fast` command. Subcommands register themselves with @command; each gets its own
argparse sub-parser and returns an exit status.

    electra-fast pretrain [--preset tiny] [--corpus PATH ...] [--steps N] ...   pre-train (see --help)
    electra-fast env                                                              versions and backends
    electra-fast selftest [--ops OPS] [--backends NAMES]                          every op vs the reference
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Optional

_COMMANDS: dict[str, tuple[str, Callable, Callable]] = {}


def command(name: str, help: str):
    """Register `run(args) -> int` as subcommand `name`; `run.add_arguments(parser)` adds its options."""

    def register(run: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = (help, getattr(run, "add_arguments", lambda parser: None), run)
        return run

    return register


def _arguments(add: Callable[[argparse.ArgumentParser], None]):
    def attach(run):
        run.add_arguments = add
        return run

    return attach


# ---------------------------------------------------------------------------------------------- env
@command("env", help="print versions, hardware and the available backends (for bug reports)")
def _env(args: argparse.Namespace) -> int:
    from .env import main as env_main

    env_main()
    return 0


# ----------------------------------------------------------------------------------------- pretrain
def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from .models.config import GENERATORS, ElectraConfig

    data = p.add_argument_group("data")
    data.add_argument("--corpus", nargs="+", metavar="PATH",
                      help=".txt/.jsonl files (optionally .gz) or directories; default: the bundled corpus "
                           "(106 Wikipedia articles, CC BY-SA)")
    data.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json or vocab.txt (default: train a "
                      "WordPiece vocabulary on the corpus, cached)")
    data.add_argument("--vocab-size", type=int, default=8192, help="size of the trained vocabulary (8192)")
    data.add_argument("--heldout-fraction", type=float, default=0.02, help="documents held out for evaluation")
    data.add_argument("--streaming", action="store_true", help="pack on the fly instead of caching (huge corpora)")
    data.add_argument("--cache-dir", help="tokenizer and packed-data cache (default ~/.cache/electra_fast)")

    model = p.add_argument_group("model")
    model.add_argument("--preset", default="tiny", choices=ElectraConfig.preset_names())
    model.add_argument("--generator", default="network", choices=GENERATORS)
    model.add_argument("--early-exit-keep", type=float, nargs="+", metavar="F",
                       help="turn budgeted early exit on: after each exit layer every sequence keeps this "
                            "fraction of its positions, the least confident (one value, or one per exit layer; "
                            "default 0.5 when another early-exit flag is given)")
    model.add_argument("--early-exit-layers", type=int, nargs="+", metavar="L",
                       help="exit after these discriminator layers (default: num_hidden_layers // 3)")
    model.add_argument("--early-exit-warmup-steps", type=int, default=0, metavar="N",
                       help="budget: the exit fraction ramps from 0 to 1 - keep over N steps; threshold: no "
                            "token exits before step N")
    model.add_argument("--early-exit-threshold", type=float, metavar="X",
                       help="threshold policy instead of a budget: a token stops once its exit head is this "
                            "confident (0.5, 1]")

    train = p.add_argument_group("training")
    train.add_argument("--steps", type=int, default=300)
    train.add_argument("--batch-size", type=int, help="sequences per process per micro-step (preset's)")
    train.add_argument("--seq-len", type=int, help="tokens per sequence (preset's)")
    train.add_argument("--lr", type=float, help="peak learning rate (preset's)")
    train.add_argument("--warmup-steps", type=int, help="linear warm-up (default min(preset's, steps/10))")
    train.add_argument("--accumulation", type=int, default=1, help="gradient accumulation micro-steps")
    train.add_argument("--grad-clip", type=float, default=1.0, help="max global gradient norm (0: off)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--compile", action="store_true", help="torch.compile each encoder layer (dynamic shapes, no recompiling per batch)")
    train.add_argument("--fsdp", action="store_true", help="FullyShardedDataParallel instead of DDP under torchrun")
    train.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: the local GPU if any)")

    out = p.add_argument_group("output")
    out.add_argument("--output", default="electra-pretrain", help="checkpoint, metrics and export directory")
    out.add_argument("--resume", action="store_true", help="continue from <output>/checkpoint.safetensors")
    out.add_argument("--eval-every", type=int, default=0, help="held-out evaluation interval (0: at the end)")
    out.add_argument("--eval-sequences", type=int, default=64, help="held-out sequences per evaluation")
    out.add_argument("--save-every", type=int, default=0, help="checkpoint interval (0: at the end and on Ctrl-C)")
    out.add_argument("--log-every", type=int, default=10, help="metrics.jsonl interval")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    out.add_argument("--no-export", action="store_true", help="skip the Hugging Face export")
    # Every default is None, "not given": a new run takes TrainConfig's defaults (the values shown above), a
    # resumed one its checkpoint's record, so that a flag given with its default value still counts as given.
    p.set_defaults(**{action.dest: None for action in p._actions if action.dest != "help"})
    p.epilog = _resume_help()


def _resume_help() -> str:
    from .training.record import CHANGEABLE, flag

    changeable = ", ".join(flag(f) for f in CHANGEABLE if f not in ("resume", "given"))
    return (f"--resume continues the run in --output as its checkpoint records it (model, training arguments, "
            f"seed, data order, tokenizer): flags left out take the recorded values, and a flag that contradicts "
            f"the record is an error. These may change on resume: {changeable} (--steps only upward, to extend "
            f"the run); --accumulation only with the number of ranks, keeping their product.")


@command("pretrain", help="pre-train ELECTRA on local text (default: the bundled corpus, tiny preset)")
@_arguments(_pretrain_arguments)
def _pretrain(args: argparse.Namespace) -> int:
    from .train import TrainConfig, pretrain

    fields = dict(
        preset=args.preset, corpus=args.corpus, tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        steps=args.steps, batch_size=args.batch_size, seq_len=args.seq_len, lr=args.lr,
        warmup_steps=args.warmup_steps, grad_clip=args.grad_clip, accumulation=args.accumulation,
        generator=args.generator, early_exit_threshold=args.early_exit_threshold,
        early_exit_keep=args.early_exit_keep, early_exit_layers=args.early_exit_layers,
        early_exit_warmup_steps=args.early_exit_warmup_steps, seed=args.seed,
        output=args.output, resume=args.resume, eval_every=args.eval_every, eval_sequences=args.eval_sequences,
        save_every=args.save_every, log_every=args.log_every, heldout_fraction=args.heldout_fraction,
        streaming=args.streaming, cache_dir=args.cache_dir, compile=args.compile, fsdp=args.fsdp,
        device=args.device, progress=None if args.no_progress is None else not args.no_progress,
        export_hf=None if args.no_export is None else not args.no_export)
    given = {name: value for name, value in fields.items() if value is not None}  # the flags on the command line
    pretrain(TrainConfig(**given, given=tuple(given)))
    return 0


# ------------------------------------------------------------------------------------ bench, selftest
def _delegated(name: str, module: str, entry: str, help: str) -> None:
    """Subcommand `name` whose options (`add_arguments(parser)`) and run (`entry(args) -> int`) live in
    electra_fast.<module>, imported only when the subcommand is used."""

    def load():
        return importlib.import_module(f".{module}", __package__)

    @command(name, help=help)
    @_arguments(lambda parser: load().add_arguments(parser))
    def run(args: argparse.Namespace) -> int:
        return getattr(load(), entry)(args)


_delegated("bench", "bench", "run",
           help="run the benchmark suite (ops, training step, FLOPs, quality, roofline) from a source checkout")
_delegated("selftest", "selftest", "main",
           help="check every op on every backend here against the reference (values, gradients, ids)")


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="electra-fast", description="electra_fast command line")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add_arguments, run) in _COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(_run=run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as e:
        print(f"electra-fast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"electra-fast {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
