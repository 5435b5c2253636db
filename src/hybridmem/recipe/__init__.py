"""The reference run: budgets, the resumable recipe, and its export (see recipe/recipe.py)."""
