# The reference text trainer. A trainer host builds this image with the repository root as the context and passes
# the training contract's arguments to the entrypoint; the child-process sandbox reads the same three instructions.
FROM python:3.11-slim

COPY . /workspace
WORKDIR /workspace

RUN pip install --no-cache-dir -r requirements.txt

ENTRYPOINT ["python3", "/workspace/scripts/text_trainer.py"]
