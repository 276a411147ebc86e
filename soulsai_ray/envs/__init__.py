"""Environment construction: ``factory.make_env`` builds every env the same way from config;
``wrappers`` holds the wrappers it applies, ``soulsgym`` the SoulsGym adapter."""
