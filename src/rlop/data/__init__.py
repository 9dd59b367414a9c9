from rlop.data.formatting import format_prompt  # noqa: F401
from rlop.data.io import (  # noqa: F401
    DataError,
    InstructionExample,
    PreferenceExample,
    load_instructions,
    load_preferences,
)
