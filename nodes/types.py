"""The custom socket types that carry JointAV values between nodes (any Python object flows through them).

Each wraps one `pipeline.types` value: a socket of one type only connects to an input of the same type, so
the editor stops users from wiring, say, a latent into a conditioning input.
"""

from comfy_api.latest import io

JointAVModel = io.Custom("JOINTAV_MODEL")  # pipeline.types.JointModel
JointAVDecoders = io.Custom("JOINTAV_DECODERS")  # pipeline.types.Decoders
JointAVConditioning = io.Custom("JOINTAV_CONDITIONING")  # pipeline.types.JointConditioning
JointAVLatent = io.Custom("JOINTAV_LATENT")  # pipeline.types.JointLatent
JointAVCameo = io.Custom("JOINTAV_CAMEO")  # cameo.profile.Profile
JointAVFilm = io.Custom("JOINTAV_FILM")  # pipeline.film_memory.FilmRecord: what made a multi-shot film

CATEGORY = "JointAV"
