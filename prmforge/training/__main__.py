"""``python -m prmforge.training train|eval ...``, and the same on several processes::

    accelerate launch --multi_gpu --num_processes 8 -m prmforge.training train --data B --model M --output O
    torchrun --nproc_per_node 8 -m prmforge.training train --data B --model M --output O

Every process runs the whole command; each trains on its slice of every step's rows (DDP) and only the
main one writes and prints. On CPUs (to test the distributed path) set ``ACCELERATE_USE_CPU=true`` and
use torchrun: the processes talk over gloo.
"""

from __future__ import annotations

from prmforge.pipelines.cli_train import train_app

if __name__ == "__main__":
    train_app()
