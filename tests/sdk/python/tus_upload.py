"""Uploads a file with tuspy (pinned in requirements.txt) in 32 KiB chunks, as a Python backend
would. tuspy sends an empty Upload-Metadata header when given no metadata. Prints the upload URL.

Usage: python tus_upload.py <tusEndpoint> <file>
"""

import sys

from tusclient import client


def main() -> None:
    if len(sys.argv) != 3:
        print("usage: python tus_upload.py <tusEndpoint> <file>", file=sys.stderr)
        sys.exit(2)
    endpoint, path = sys.argv[1], sys.argv[2]
    uploader = client.TusClient(endpoint).uploader(file_path=path, chunk_size=32 * 1024)
    uploader.upload()
    print(uploader.url)


if __name__ == "__main__":
    main()
