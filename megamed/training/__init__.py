"""megamed.training"""
