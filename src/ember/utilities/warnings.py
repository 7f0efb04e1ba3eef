"""Warning categories, named as in Lightning."""


class PossibleUserWarning(UserWarning):
    """A setting that is probably not what the user meant."""


class EmberDeprecationWarning(DeprecationWarning):
    """A name or argument that will go away."""
