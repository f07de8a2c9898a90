"""Types of the result-row masker's C module (`_rows.c`)."""

def mask_data_rows(
    buf: bytes, pos: int, layout: bytes | None, max_length: int, stop: int = ..., /
) -> tuple[int, bytes | None, int, int]: ...
def mask_copy_rows(
    buf: bytes, pos: int, layout: bytes | None, max_length: int, stop: int = ..., /
) -> tuple[int, bytes | None, int, int]: ...
def scanned_cells(
    buf: bytes, pos: int, layout: bytes, max_length: int, /
) -> tuple[int, bytes, bytes]: ...
